package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/attach/kube"
	"github.com/srvlab/rds-csi/internal/durable"
	"github.com/srvlab/rds-csi/metrics"
	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdscsi"
	"github.com/srvlab/rds-csi/rdscsi/nvme"
)

// version is set at link time (-ldflags "-X main.version=v1.2.3");
// otherwise the module version from the build info is used.
var version = ""

// errStoppedDuringStartup wraps the error of a startup that SIGTERM or
// SIGINT cut short; main exits 0 for it.
var errStoppedDuringStartup = errors.New("stopped during startup")

// Shutdown bounds. Together they keep the exit within 5 s of SIGTERM, well
// inside Kubernetes' default 30 s grace period: an RPC cut short is retried
// by the CO (every CSI call is idempotent), a hung one must not hold the
// pod.
const (
	gracePeriod  = 2500 * time.Millisecond // in-flight RPCs may finish within this
	flushTimeout = 1 * time.Second         // final metrics export
)

// lockWait bounds how long startup waits for the attachment state's lock.
// A process killed a moment ago (crash loop, kill -9 then restart) may
// still hold it until the kernel has reaped it; a second live plugin on
// the same --state-file holds it for good and gets a clear error.
const lockWait = 5 * time.Second

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// plugin holds everything run builds, so that close can tear it down in
// dependency order whatever step failed.
type plugin struct {
	tel     *telemetry
	sim     *simulation
	client  *rdsclient.Client
	store   *attach.FileStore
	manager *attach.Manager
	runDone chan struct{} // closed when the Manager's Run returns
	rec     *metrics.OTel
	serving bool // startup succeeded: a final metrics export is worth it

	// Cluster mode (cluster.go): the Cluster keeps manager in step with
	// the cluster and is the controller's attachments and node lookup.
	cluster     *kube.Cluster
	clusterStop context.CancelFunc // ends the Cluster's Run
	clusterDone chan struct{}      // closed when the Cluster's Run returns
	clusterErr  error              // what Run returned, set before clusterDone closes
	apiServer   string             // the API server's address, for the log
}

// run is the whole program: it returns when ctx ends (SIGTERM, SIGINT) or
// on a fatal error, which main prints as one line.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (err error) {
	serving := false
	defer func() {
		if err != nil && !serving && ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", errStoppedDuringStartup, err)
		}
	}()
	c, err := parseConfig(args, getenv)
	if errors.Is(err, errHelp) {
		usage(stdout)
		return nil
	}
	if err != nil {
		return err
	}
	ver := buildVersion()
	if c.version {
		fmt.Fprintf(stdout, "rds-csi-plugin %s\n", ver)
		return nil
	}
	if c.checkConfig {
		// Flags and environment only: files, the RDS and the cluster are
		// what a deployment provides, checked when the plugin starts.
		fmt.Fprintln(stdout, "configuration ok")
		return nil
	}
	logger := newLogger(c, stderr)

	// Read the credentials before anything else: a wrong path or key is
	// the commonest mistake and its error should not wait for anything.
	var rdsConfig *rdsclient.Config
	if c.hasController() && !c.simulate {
		if rdsConfig, err = clientConfig(c); err != nil {
			return err
		}
	}

	p := &plugin{}
	defer func() {
		if cerr := p.close(logger); cerr != nil && err == nil {
			err = cerr
		}
	}()

	// Telemetry first: its listener is bound now, so a taken port is a
	// startup error, but /metrics is served only once the attachment state
	// is loaded (the first scrape is already right).
	if p.tel, err = startTelemetry(ctx, c, getenv, ver, logger); err != nil {
		return err
	}

	var disks rdscsi.Disks
	var connector nvme.Connector
	if c.simulate {
		if p.sim, err = startSimulation(c, getenv, logger); err != nil {
			return err
		}
	}

	// The recorder before what reports to it: the attachment state
	// registers its gauges and events on it once loaded.
	if p.rec, err = metrics.NewOTel(p.tel.mp, metrics.WithLogger(logger)); err != nil {
		return err
	}
	if c.hasController() {
		if c.clusterOn {
			err = p.openCluster(c, ver, logger)
		} else {
			err = p.openAttachments(ctx, c, logger)
		}
		if err != nil {
			return err
		}
	}

	if c.hasController() {
		// While the Cluster fills its caches.
		if p.client, err = p.dial(ctx, c, rdsConfig, logger); err != nil {
			return err
		}
		disks = p.client
	}
	if p.cluster != nil {
		// Neither the socket nor /metrics before the attachment state is
		// the cluster's.
		p.logTruth(c, logger)
		if err := p.waitCluster(ctx, logger); err != nil {
			return err
		}
	}
	if c.hasNode() {
		if p.sim != nil {
			connector = p.sim.connector(logger)
		} else {
			connector = nvme.NewTCPConnector()
		}
	}

	srv, err := p.grpcServer(c, ver, disks, connector, logger)
	if err != nil {
		return err
	}
	lis, err := rdscsi.Listen(c.endpoint)
	if err != nil {
		return c.listenError(err)
	}
	if p.store != nil {
		p.logTruth(c, logger)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	p.tel.serve()
	p.serving, serving = true, true

	attrs := []any{"version", ver, "mode", c.mode, "endpoint", c.endpoint, "node_id", c.nodeID}
	if p.tel.metricsAddr != "" {
		attrs = append(attrs, "metrics_address", p.tel.metricsAddr)
	}
	if p.tel.otlp != "" {
		attrs = append(attrs, "otlp_protocol", p.tel.otlp)
	}
	if p.sim != nil {
		attrs = append(attrs, "simulated_rds", p.sim.srv.Addr(), "simulate_dir", p.sim.dir)
	}
	if p.store != nil {
		attrs = append(attrs, "state_file", c.stateFile)
	}
	if p.cluster != nil {
		attrs = append(attrs, "attachment_truth", "cluster")
	}
	logger.Info("rds-csi-plugin: serving", attrs...)
	if p.sim != nil && p.sim.tempDir && p.store != nil && c.source["state-file"] != "" {
		// The attachments outlive the process, the fake's disks do not.
		logger.Warn("simulate: the simulated RDS's disks are lost on exit while --state-file keeps their attachments; use --simulate-dir to keep both")
	}

	select {
	case <-ctx.Done():
		logger.Info("rds-csi-plugin: shutting down", "cause", context.Cause(ctx))
	case err := <-serveErr:
		srv.Stop()
		return fmt.Errorf("grpc server: %w", err)
	case err := <-p.tel.serveErr:
		stopGracefully(srv, logger)
		return err
	case <-p.clusterDone: // nil without the cluster
		stopGracefully(srv, logger)
		return fmt.Errorf("kubernetes: stopped keeping the attachments in step: %w", p.clusterErr)
	}
	stopGracefully(srv, logger)
	return nil
}

// stopGracefully stops accepting RPCs and waits for in-flight ones, for at
// most gracePeriod; then it cancels whatever is left.
func stopGracefully(srv *grpc.Server, logger *slog.Logger) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(gracePeriod)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		logger.Warn("rds-csi-plugin: in-flight RPCs did not finish in time, cancelling them", "grace_period", gracePeriod)
		srv.Stop()
		<-done
	}
}

// openAttachments loads the attachment state, has p.rec observe it and
// starts the Manager's migration timer.
func (p *plugin) openAttachments(ctx context.Context, c *config, logger *slog.Logger) (err error) {
	// Durably: the log's own directory entry must survive a power cut.
	if err := durable.MkdirAll(filepath.Dir(c.stateFile), 0o750); err != nil {
		return fmt.Errorf("%s: %w", c.src("state-file"), err)
	}
	var opts []attach.FileOption
	if c.stateTruncate {
		opts = append(opts, attach.WithTruncateAtCorruption())
	}
	if p.store, err = openStore(ctx, c.stateFile, logger, opts...); err != nil {
		if errors.Is(err, attach.ErrCorrupt) {
			return fmt.Errorf("%s: %w; to start, either move it aside (the controller "+
				"starts with no attachments and the CO re-publishes what it knows), or start once with "+
				"--state-truncate-at-corruption to keep the records before the damage", c.src("state-file"), err)
		}
		return fmt.Errorf("%s: %w", c.src("state-file"), err)
	}
	p.manager, err = attach.NewManager(ctx, p.store, attach.WithLogger(logger.With("component", "attach")))
	if err != nil {
		return fmt.Errorf("%s: %w", c.src("state-file"), err)
	}
	// NewManager fires no events: nothing is missed before this.
	if err := p.rec.ObserveAttachments(p.manager); err != nil {
		return err
	}
	p.startManager(logger)
	return nil
}

// startManager runs the Manager's migration timer until the Manager is
// closed.
func (p *plugin) startManager(logger *slog.Logger) {
	p.runDone = make(chan struct{})
	go func() {
		defer close(p.runDone)
		// Returns nil once the Manager is closed.
		if err := p.manager.Run(context.Background()); err != nil {
			logger.Error("attach: manager stopped", "err", err)
		}
	}()
}

// openStore opens the FileStore at path with opts, waiting up to lockWait
// while another process holds its lock.
func openStore(ctx context.Context, path string, logger *slog.Logger, opts ...attach.FileOption) (*attach.FileStore, error) {
	logger = logger.With("component", "attach")
	deadline := time.Now().Add(lockWait)
	for logged := false; ; {
		store, err := attach.NewFileStore(path, append([]attach.FileOption{attach.WithFileLogger(logger)}, opts...)...)
		if !errors.Is(err, attach.ErrLocked) {
			return store, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w (is another rds-csi-plugin using it? waited %v)", err, lockWait)
		}
		if !logged {
			logger.Warn("attach: state file locked by another process, waiting", "path", path, "max_wait", lockWait)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (gave up: %w)", err, context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dial connects to the real RDS (with cfg) or the simulated one within
// --rds-dial-timeout.
func (p *plugin) dial(ctx context.Context, c *config, cfg *rdsclient.Config, logger *slog.Logger) (*rdsclient.Client, error) {
	addr := c.rdsAddress
	if p.sim != nil {
		addr, cfg = p.sim.srv.Addr(), p.sim.srv.ClientConfig()
	}
	dctx, cancel := context.WithTimeout(ctx, c.rdsDialTimeout)
	defer cancel()
	client, err := rdsclient.Dial(dctx, addr, cfg,
		rdsclient.WithLogger(logger.With("component", "rdsclient")),
		rdsclient.WithObserver(p.rec),
		rdsclient.WithDialTimeout(c.rdsDialTimeout))
	if err != nil {
		return nil, fmt.Errorf("connecting to the RDS at %s: %w", addr, err)
	}
	return client, nil
}

// clientConfig reads the SSH key and the host key pin.
func clientConfig(c *config) (*rdsclient.Config, error) {
	pem, err := os.ReadFile(c.rdsKeyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.src("rds-key-file"), err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, fmt.Errorf("%s: %s is protected by a passphrase, which is not supported", c.src("rds-key-file"), c.rdsKeyFile)
		}
		return nil, fmt.Errorf("%s: %s: %w", c.src("rds-key-file"), c.rdsKeyFile, err)
	}
	var hostKey ssh.HostKeyCallback
	if c.rdsHostKey != "" {
		if hostKey, err = rdsclient.HostKeyFromLine(c.rdsHostKey); err != nil {
			return nil, fmt.Errorf("%s: %w", c.src("rds-host-key"), err)
		}
	} else {
		var files []string
		for f := range strings.SplitSeq(c.rdsKnownHosts, ",") {
			if f = strings.TrimSpace(f); f != "" {
				files = append(files, f)
			}
		}
		if hostKey, err = rdsclient.KnownHosts(files...); err != nil {
			return nil, fmt.Errorf("%s: %w", c.src("rds-known-hosts"), err)
		}
	}
	return &rdsclient.Config{
		User:            c.rdsUser,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKey,
	}, nil
}

// grpcServer builds the CSI services and the gRPC server with its
// interceptor chain: logging (secrets stripped) -> metrics -> per-volume
// serialization.
func (p *plugin) grpcServer(c *config, ver string, disks rdscsi.Disks, connector nvme.Connector, logger *slog.Logger) (*grpc.Server, error) {
	serialize := rdscsi.SerializeInterceptor()
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(
		rdscsi.LoggingInterceptor(logger.With("component", "grpc")),
		rdscsi.MetricsInterceptor(p.rec),
		serialize,
	))

	idOpts := []rdscsi.IdentityOption{rdscsi.WithControllerService(false)}
	if c.hasController() {
		var attachments rdscsi.Attachments = p.manager
		known := c.knownNodeIDs()
		lookup := func(_ context.Context, nodeID string) (bool, error) { return known[nodeID], nil }
		if p.cluster != nil {
			attachments, lookup = p.cluster, p.cluster.NodeExists
		}
		ctrl, err := rdscsi.NewControllerServer(disks, attachments,
			rdscsi.WithLogger(logger.With("component", "controller")),
			rdscsi.WithRecorder(p.rec),
			rdscsi.WithVolumePath(c.volumePath),
			rdscsi.WithNVMeAddress(c.nvmeAddressFor(p.sim)),
			rdscsi.WithNVMePort(c.nvmePort),
			rdscsi.WithNodeLookup(lookup),
			// The limit the nodes report (same flag on every node), held
			// even for a CO that does not enforce it.
			rdscsi.WithMaxVolumesPerNode(int64(c.maxVolumes)),
		)
		if err != nil {
			return nil, fmt.Errorf("controller: %w", err)
		}
		ctrl.Register(srv)
		// Controller service, expansion, topology and a probe of the RDS.
		idOpts = []rdscsi.IdentityOption{rdscsi.WithController(ctrl)}
	}
	if c.hasNode() {
		if err := c.checkNodeStateDir(); err != nil {
			return nil, err
		}
		node, err := rdscsi.NewNodeServer(c.nodeID, connector,
			rdscsi.WithLogger(logger.With("component", "node")),
			rdscsi.WithRecorder(p.rec),
			rdscsi.WithStateDir(c.nodeStateDir),
			rdscsi.WithMaxVolumesPerNode(int64(c.maxVolumes)),
		)
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		node.Register(srv)
	}
	ids, err := rdscsi.NewIdentityServer(c.driverName, ver, idOpts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.src("driver-name"), err)
	}
	ids.Register(srv)
	return srv, nil
}

// nvmeAddressFor is the NVMe/TCP address put in volume contexts.
func (c *config) nvmeAddressFor(sim *simulation) string {
	if sim != nil && c.nvmeAddress == "" {
		return "127.0.0.1"
	}
	return c.defaultNVMeAddress()
}

// close tears down in dependency order: the Cluster first (after the
// gRPC server stopped, so the Lease is released only when this replica
// serves no more), then the final metrics export while the attachment
// state is still open, then the recorder, the state, the RDS connection
// and the simulation.
func (p *plugin) close(logger *slog.Logger) error {
	var errs []error
	p.stopCluster(logger)
	if p.tel != nil {
		// A collector that is down must not turn a clean stop into a
		// failure: the metrics are lost either way, the state is not.
		// After a failed startup there is nothing worth exporting, and the
		// startup error must stay the only line.
		timeout := flushTimeout
		if !p.serving {
			timeout = 0
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		if err := p.tel.shutdown(ctx); err != nil && p.serving {
			logger.Warn("rds-csi-plugin: final metrics export failed", "err", err)
		}
		cancel()
	}
	if p.rec != nil {
		if err := p.rec.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if p.manager != nil {
		if err := p.manager.Close(); err != nil {
			errs = append(errs, fmt.Errorf("attachment state: %w", err))
		}
		if p.runDone != nil {
			<-p.runDone
		}
	}
	if p.store != nil {
		if err := p.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("attachment state: %w", err))
		}
	}
	if p.client != nil {
		if err := p.client.Close(); err != nil {
			errs = append(errs, fmt.Errorf("rds client: %w", err))
		}
	}
	if p.sim != nil {
		if err := p.sim.close(); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		logger.Warn("rds-csi-plugin: shutdown", "err", err)
	} else if p.serving {
		logger.Info("rds-csi-plugin: stopped")
	}
	return err
}
