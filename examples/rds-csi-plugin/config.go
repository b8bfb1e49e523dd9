package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/srvlab/rds-csi/internal/durable"
	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdscsi"
)

// errHelp is returned by parseConfig for --help: run prints the usage and
// exits 0.
var errHelp = errors.New("help requested")

// Plugin modes.
const (
	modeController = "controller"
	modeNode       = "node"
	modeAll        = "all"
)

// config is everything the flags and their RDS_CSI_* fallbacks set.
type config struct {
	endpoint       string
	mode           string
	nodeID         string
	driverName     string
	rdsAddress     string
	rdsUser        string
	rdsKeyFile     string
	rdsKnownHosts  string
	rdsHostKey     string
	rdsDialTimeout time.Duration
	volumePath     string
	stateFile      string
	nodeStateDir   string
	metricsAddress string
	logFormat      string
	logLevel       string
	knownNodes     string
	nvmeAddress    string
	nvmePort       int
	simulate       bool
	simulateDir    string
	maxVolumes     int
	stateTruncate  bool
	version        bool
	checkConfig    bool

	// Cluster mode (cluster.go): the controller's attachment truth and
	// node lookup come from the Kubernetes API.
	cluster           string // auto, on or off, as given
	clusterOn         bool   // what cluster resolved to (validate)
	inPod             bool   // KUBERNETES_SERVICE_HOST is set
	kubeconfig        string
	leaderElection    bool
	leNamespace       string
	leIdentity        string
	leLeaseDuration   time.Duration
	leRenewDeadline   time.Duration
	leRetryPeriod     time.Duration
	reconcileGrace    time.Duration
	reconcileInterval time.Duration

	// refused is the last value a flag refused (see checkedValue), so
	// that the error names the flag as typed and what it wants.
	refused *refusedValue

	// source names where each flag's value came from ("--mode" or
	// "RDS_CSI_MODE") so errors point at what the operator typed.
	source map[string]string
}

// Defaults that are not plain literals in the flag table.
const (
	defaultEndpoint     = "unix:///csi/csi.sock"
	defaultStateFile    = "/var/lib/rds-csi/attachments.log"
	defaultNodeStateDir = "/var/lib/rds-csi/node"
	defaultVolumePath   = "/storage-pool/k8s"
	defaultRDSPort      = "22"
)

// envPrefix prefixes the environment fallback of every flag.
const envPrefix = "RDS_CSI_"

// noEnv are the flags without an environment fallback: they act at once
// instead of configuring, so a variable left in a pod's environment must
// not trigger them (RDS_CSI_VERSION=true would print the version and exit
// instead of serving). --help is the flag package's own and has none
// either.
var noEnv = map[string]bool{"version": true, "check-config": true}

// envName is the environment variable that backs a flag:
// --rds-key-file -> RDS_CSI_RDS_KEY_FILE.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// newFlagSet defines every flag on a fresh FlagSet bound to c. It is also
// what the usage text and the README flags table are checked against.
func newFlagSet(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("rds-csi-plugin", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.endpoint, "endpoint", defaultEndpoint, "CSI gRPC endpoint (unix:///path or tcp://host:port)")
	fs.StringVar(&c.mode, "mode", modeAll, "services to serve: controller, node or all")
	fs.StringVar(&c.nodeID, "node-id", "", "this node's ID (default: the host name)")
	fs.StringVar(&c.driverName, "driver-name", rdscsi.DefaultDriverName, "CSI driver name")
	fs.StringVar(&c.rdsAddress, "rds-address", "", "RDS SSH address host[:port] (port 22 if omitted); required by the controller unless --simulate")
	fs.StringVar(&c.rdsUser, "rds-user", "admin", "RouterOS user")
	fs.StringVar(&c.rdsKeyFile, "rds-key-file", "", "SSH private key file (unencrypted) of --rds-user; required by the controller unless --simulate")
	fs.StringVar(&c.rdsKnownHosts, "rds-known-hosts", "", "comma-separated OpenSSH known_hosts files that pin the RDS host key")
	fs.StringVar(&c.rdsHostKey, "rds-host-key", "", `the RDS host key as one line ("ssh-ed25519 AAAA...")`)
	fs.DurationVar(&c.rdsDialTimeout, "rds-dial-timeout", 15*time.Second, "bound on connecting to the RDS at startup")
	fs.StringVar(&c.volumePath, "volume-path", defaultVolumePath, "directory below a pool on the RDS that holds the volume files")
	fs.StringVar(&c.stateFile, "state-file", defaultStateFile, "the controller's attachment state, an append-only binary log (attach.FileStore); with --simulate, <simulate-dir>/attachments.log unless set")
	fs.StringVar(&c.nodeStateDir, "node-state-dir", defaultNodeStateDir, "directory of the node's stage records; with --simulate, <simulate-dir>/node unless set")
	fs.StringVar(&c.metricsAddress, "metrics-address", "", "listen address host:port of the Prometheus /metrics endpoint, e.g. :9090 or 127.0.0.1:9090; empty disables it")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&c.stateTruncate, "state-truncate-at-corruption", false, "recovery only: open a --state-file damaged in the middle by keeping the records before the damage and dropping the rest, instead of refusing to start")
	fs.StringVar(&c.knownNodes, "known-nodes", "", "comma-separated node IDs the controller accepts besides --node-id")
	fs.StringVar(&c.nvmeAddress, "nvme-address", "", "NVMe/TCP address (IP address or host name, no port) nodes connect to (default: the host of --rds-address)")
	fs.IntVar(&c.nvmePort, "nvme-port", rdscsi.DefaultNVMePort, "NVMe/TCP port that new volumes are exported on and nodes connect to")
	fs.BoolVar(&c.simulate, "simulate", false, "run against an in-process fake RDS on loopback instead of a real one, attaching volumes as loop devices (node staging needs root)")
	fs.StringVar(&c.simulateDir, "simulate-dir", "", "directory of the simulation: the fake RDS's disks, the attachment state and the stage records (default: a temporary directory removed on exit)")
	fs.IntVar(&c.maxVolumes, "max-volumes", rdscsi.DefaultMaxVolumesPerNode, "volumes one node may have published: the node's max_volumes_per_node, enforced by the controller too; 0 for no limit")
	fs.BoolVar(&c.version, "version", false, "print the version and exit (no environment fallback)")
	fs.BoolVar(&c.checkConfig, "check-config", false, "validate the flags and environment, print \"configuration ok\" and exit, connecting to nothing (no environment fallback)")
	fs.StringVar(&c.cluster, "cluster", clusterAuto, "the controller's attachment truth and node lookup: on (the cluster's VolumeAttachments, PersistentVolumes and Nodes), off (--state-file and --known-nodes) or auto (on in a pod or with --kubeconfig)")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file of the cluster; empty: the pod's service account (in-cluster configuration)")
	fs.BoolVar(&c.leaderElection, "leader-election", false, "cluster mode: elect a leader among the controller replicas through a Lease; only the leader reports the attachment gauges, counts attachment events and posts Events")
	fs.StringVar(&c.leNamespace, "leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's namespace)")
	fs.StringVar(&c.leIdentity, "leader-election-identity", "", "this replica's name in the Lease (default: the host name, in a pod its name)")
	fs.DurationVar(&c.leLeaseDuration, "leader-election-lease-duration", 15*time.Second, "how long the other replicas wait after the leader's last renewal before one takes over")
	fs.DurationVar(&c.leRenewDeadline, "leader-election-renew-deadline", 10*time.Second, "how long the leader keeps trying to renew the Lease before it steps down")
	fs.DurationVar(&c.leRetryPeriod, "leader-election-retry-period", 5*time.Second, "how often each replica tries to acquire or renew the Lease")
	fs.DurationVar(&c.reconcileGrace, "reconcile-grace", 5*time.Minute, "cluster mode: how long a deleted node's attachments are kept before they are cleared")
	fs.DurationVar(&c.reconcileInterval, "reconcile-interval", 30*time.Second, "cluster mode: how often the controller looks for attachments of deleted nodes")
	fs.VisitAll(func(f *flag.Flag) { f.Value = c.checked(f.Name, f.Value) })
	return fs
}

// refusedValue is a value a flag refused, with what the flag wants.
type refusedValue struct {
	name, value, want string
}

// checkedValue records the value v refuses in c.refused. The flag
// package's own message for it, `invalid value "5" for flag
// -rds-dial-timeout: parse error`, says neither what the flag wants nor
// the name as typed (--rds-dial-timeout, or its environment variable).
type checkedValue struct {
	flag.Value
	c          *config
	name, want string
}

func (v *checkedValue) Set(s string) error {
	if err := v.Value.Set(s); err != nil {
		v.c.refused = &refusedValue{name: v.name, value: s, want: v.want}
		return err
	}
	return nil
}

// Get keeps the value a flag.Getter.
func (v *checkedValue) Get() any { return v.Value.(flag.Getter).Get() }

// checkedBool keeps a bool flag's IsBoolFlag, so that --simulate needs no
// value.
type checkedBool struct{ *checkedValue }

func (checkedBool) IsBoolFlag() bool { return true }

// checked wraps v, the flag name's value, in a checkedValue saying what a
// valid value looks like; a string flag takes anything and stays as it is.
func (c *config) checked(name string, v flag.Value) flag.Value {
	g, ok := v.(flag.Getter)
	if !ok {
		return v
	}
	var want string
	switch g.Get().(type) {
	case time.Duration:
		want = "a duration with its unit, such as 15s or 1m"
	case int:
		want = "a whole number"
	case bool:
		return checkedBool{&checkedValue{Value: v, c: c, name: name, want: "true or false"}}
	default:
		return v
	}
	return &checkedValue{Value: v, c: c, name: name, want: want}
}

// parseError rephrases an error of fs.Parse with the flag's name as the
// operator typed it.
func (c *config) parseError(err error) error {
	if r := c.refused; r != nil {
		return fmt.Errorf("--%s: want %s, got %q (see --help)", r.name, r.want, r.value)
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Errorf("unknown flag --%s (see --help)", name)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Errorf("--%s needs a value (see --help)", name)
	}
	return fmt.Errorf("%w (see --help)", err)
}

// parseConfig reads args, then fills every flag not given on the command
// line from its RDS_CSI_* variable (except noEnv), then validates the
// result.
func parseConfig(args []string, getenv func(string) string) (*config, error) {
	c := &config{source: map[string]string{}}
	fs := newFlagSet(c)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, c.parseError(err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) { c.source[f.Name] = "--" + f.Name })
	c.inPod = getenv(envInPod) != ""
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if envErr != nil || c.source[f.Name] != "" || noEnv[f.Name] {
			return
		}
		name := envName(f.Name)
		v := getenv(name)
		if v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			if r := c.refused; r != nil {
				envErr = fmt.Errorf("%s: want %s, got %q", name, r.want, v)
			} else {
				envErr = fmt.Errorf("invalid value %q for %s: %w", v, name, err)
			}
			return
		}
		c.source[f.Name] = name
	})
	if envErr != nil {
		return nil, envErr
	}
	if c.version {
		return c, nil
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// src names the origin of a flag's value for error messages.
func (c *config) src(name string) string {
	if s := c.source[name]; s != "" {
		return s
	}
	return "--" + name
}

func (c *config) validate() error {
	if !slices.Contains([]string{modeController, modeNode, modeAll}, c.mode) {
		return fmt.Errorf("%s: must be controller, node or all, got %q", c.src("mode"), c.mode)
	}
	if !slices.Contains([]string{"text", "json"}, c.logFormat) {
		return fmt.Errorf("%s: must be text or json, got %q", c.src("log-format"), c.logFormat)
	}
	if _, err := parseLevel(c.logLevel); err != nil {
		return fmt.Errorf("%s: %w", c.src("log-level"), err)
	}
	if err := checkEndpoint(c.endpoint); err != nil {
		return fmt.Errorf("%s: %w", c.src("endpoint"), err)
	}
	// The rules are the Identity server's own; here they stop the start
	// before the RDS is dialled, with the flag named.
	if _, err := rdscsi.NewIdentityServer(c.driverName, "config-check"); err != nil {
		return fmt.Errorf("%s: want a domain name of at most 63 characters, such as %s, got %q", c.src("driver-name"), rdscsi.DefaultDriverName, c.driverName)
	}
	if c.rdsDialTimeout <= 0 {
		return fmt.Errorf("%s: must be positive, got %v", c.src("rds-dial-timeout"), c.rdsDialTimeout)
	}
	if c.nodeID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return fmt.Errorf("%s is required: the host name is unknown (%v)", c.src("node-id"), err)
		}
		c.nodeID = h
	}
	if c.rdsKnownHosts != "" && c.rdsHostKey != "" {
		return fmt.Errorf("%s and %s are mutually exclusive", c.src("rds-known-hosts"), c.src("rds-host-key"))
	}
	if c.simulateDir != "" && !c.simulate {
		return fmt.Errorf("%s needs --simulate", c.src("simulate-dir"))
	}
	if c.simulateDir != "" {
		// The node's stage records go below it, and the node wants an
		// absolute directory.
		dir, err := filepath.Abs(c.simulateDir)
		if err != nil {
			return fmt.Errorf("%s: %w", c.src("simulate-dir"), err)
		}
		c.simulateDir = dir
	}
	if !filepath.IsAbs(c.nodeStateDir) {
		return fmt.Errorf("%s: must be an absolute path, such as %s, got %q", c.src("node-state-dir"), defaultNodeStateDir, c.nodeStateDir)
	}
	if c.hasController() && !c.simulate {
		switch {
		case c.rdsAddress == "":
			return fmt.Errorf("%s is required for mode %q (or use --simulate)", c.src("rds-address"), c.mode)
		case c.rdsKeyFile == "":
			return fmt.Errorf("%s is required for mode %q (or use --simulate)", c.src("rds-key-file"), c.mode)
		case c.rdsKnownHosts == "" && c.rdsHostKey == "":
			return fmt.Errorf("the RDS host key must be pinned: set --rds-known-hosts or --rds-host-key (there is no trust on first use)")
		case c.rdsUser == "" || strings.ContainsFunc(c.rdsUser, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			// rdsclient.Dial refuses it too, without naming the flag.
			return fmt.Errorf("%s: want a RouterOS user name without spaces, such as admin, got %q", c.src("rds-user"), c.rdsUser)
		}
		addr, err := normaliseAddress(c.rdsAddress)
		if err != nil {
			return fmt.Errorf("%s: %w", c.src("rds-address"), err)
		}
		c.rdsAddress = addr
		if host := c.defaultNVMeAddress(); c.nvmeAddress == "" && controllerRefuses(rdscsi.WithNVMeAddress(host)) {
			return fmt.Errorf("%s: its host %q is not an IP address or host name NVMe/TCP can use; set --nvme-address, such as --nvme-address 10.0.0.5", c.src("rds-address"), host)
		}
	}
	if err := c.checkNVMeTarget(); err != nil {
		return err
	}
	if c.metricsAddress != "" {
		if err := checkListenAddress(c.metricsAddress); err != nil {
			return fmt.Errorf("%s: %w", c.src("metrics-address"), err)
		}
	}
	if c.maxVolumes < 0 {
		return fmt.Errorf("%s: must be 0 (no limit) or positive, got %d", c.src("max-volumes"), c.maxVolumes)
	}
	if err := c.checkCluster(); err != nil {
		return err
	}
	if !strings.HasPrefix(c.volumePath, "/") {
		return fmt.Errorf("%s: must be an absolute path on the RDS, got %q", c.src("volume-path"), c.volumePath)
	}
	if !strings.Contains(strings.Trim(c.volumePath, "/"), "/") {
		// rdscsi refuses it too, but naming its volumePath parameter.
		return fmt.Errorf("%s: must be a directory below a pool on the RDS, such as %s, got %q", c.src("volume-path"), defaultVolumePath, c.volumePath)
	}
	if controllerRefuses(rdscsi.WithVolumePath(c.volumePath)) {
		return fmt.Errorf("%s: want at most 147 characters (the backing files below it must fit the device's 255) of letters, digits, '.', '_', '-' and '/', without . or .. components, such as %s, got %q",
			c.src("volume-path"), defaultVolumePath, c.volumePath)
	}
	return nil
}

// checkNVMeTarget checks --nvme-address and --nvme-port. An address with
// a port ("10.0.0.5:4420") is refused rather than split: the port has its
// own flag, and taking it from two places would leave one of them wrong.
func (c *config) checkNVMeTarget() error {
	if c.nvmeAddress != "" {
		if host, port, err := net.SplitHostPort(c.nvmeAddress); err == nil && host != "" {
			return fmt.Errorf("%s: want an address without a port, got %q; give the port with --nvme-port: --nvme-address %s --nvme-port %s",
				c.src("nvme-address"), c.nvmeAddress, host, port)
		}
		if controllerRefuses(rdscsi.WithNVMeAddress(c.nvmeAddress)) {
			return fmt.Errorf("%s: want an IP address or host name, such as 10.0.0.5 or rds.example.com, got %q", c.src("nvme-address"), c.nvmeAddress)
		}
	}
	if c.nvmePort < 1 || c.nvmePort > 65535 {
		return fmt.Errorf("%s: want a TCP port from 1 to 65535, such as %d, got %d", c.src("nvme-port"), rdscsi.DefaultNVMePort, c.nvmePort)
	}
	return nil
}

// controllerRefuses reports whether rdscsi.NewControllerServer refuses
// opt. The flags that become controller options are checked at start by
// the controller's own rules, before the RDS is dialled, so that the
// error names the flag rather than rdscsi's StorageClass parameter. The
// server built here serves nothing: its client, a nil one, is never
// called.
func controllerRefuses(opt rdscsi.ControllerOption) bool {
	_, err := rdscsi.NewControllerServer((*rdsclient.Client)(nil), nil, opt)
	return err != nil
}

// checkEndpoint accepts what rdscsi.Listen takes: unix:///absolute/path
// (or unix:/absolute/path) and tcp://host:port.
func checkEndpoint(endpoint string) error {
	scheme, addr, _ := strings.Cut(endpoint, ":")
	addr = strings.TrimPrefix(addr, "//")
	switch strings.ToLower(scheme) {
	case "unix":
		if strings.HasPrefix(addr, "/") {
			return nil
		}
	case "tcp":
		if _, _, err := net.SplitHostPort(addr); err == nil && !strings.Contains(addr, "/") {
			return nil
		}
	}
	return fmt.Errorf("want unix:///path/to/socket or tcp://host:port, such as %s or tcp://127.0.0.1:10000, got %q", defaultEndpoint, endpoint)
}

// listenError explains a failure to listen on --endpoint. Its default is
// the socket path CSI sidecars share in a pod, whose directory a
// workstation lacks: name the value even when the operator gave none, and
// say what to do.
func (c *config) listenError(err error) error {
	what := c.src("endpoint")
	if c.source["endpoint"] == "" {
		what += " (default " + c.endpoint + ")"
	}
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w; create the socket's directory, or give another path such as --endpoint unix:///tmp/rds-csi.sock", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (c *config) hasController() bool { return c.mode == modeController || c.mode == modeAll }
func (c *config) hasNode() bool       { return c.mode == modeNode || c.mode == modeAll }

// knownNodeIDs is the plugin's own node ID plus --known-nodes.
func (c *config) knownNodeIDs() map[string]bool {
	ids := map[string]bool{c.nodeID: true}
	for n := range strings.SplitSeq(c.knownNodes, ",") {
		if n = strings.TrimSpace(n); n != "" {
			ids[n] = true
		}
	}
	return ids
}

// defaultNVMeAddress is --nvme-address, or the host part of --rds-address.
func (c *config) defaultNVMeAddress() string {
	if c.nvmeAddress != "" {
		return c.nvmeAddress
	}
	host, _, err := net.SplitHostPort(c.rdsAddress)
	if err != nil {
		return c.rdsAddress
	}
	return host
}

// checkListenAddress accepts what net.Listen("tcp", addr) takes: host:port,
// with the host optional (":9090") and the port a number or a service
// name. A bare port ("9090") is the common slip, so it gets the fix.
func checkListenAddress(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return nil
	}
	if _, err := strconv.ParseUint(addr, 10, 16); err == nil {
		return fmt.Errorf("want host:port, got %q; to listen on every address use %q", addr, ":"+addr)
	}
	return fmt.Errorf("want host:port such as :9090 or 127.0.0.1:9090, got %q", addr)
}

// checkNodeStateDir creates --node-state-dir if needed and proves a file
// can be created in it: the node writes a stage record there on every
// NodeStageVolume, so a directory it cannot write must stop the start,
// naming the flag, not fail every stage later.
func (c *config) checkNodeStateDir() error {
	err := durable.MkdirAll(c.nodeStateDir, 0o700)
	if err == nil {
		var f *os.File
		if f, err = os.CreateTemp(c.nodeStateDir, ".write-check-*"); err == nil {
			f.Close()
			err = os.Remove(f.Name())
		}
	}
	if err != nil {
		return fmt.Errorf("%s: the node cannot write its stage records in %s: %w", c.src("node-state-dir"), c.nodeStateDir, err)
	}
	return nil
}

// normaliseAddress appends the SSH port when addr has none.
func normaliseAddress(addr string) (string, error) {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr, nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	if host == "" || strings.ContainsAny(host, " /") {
		return "", fmt.Errorf("not a host[:port] address: %q", addr)
	}
	return net.JoinHostPort(host, defaultRDSPort), nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("must be debug, info, warn or error, got %q", s)
	}
	return l, nil
}

// newLogger builds the process logger from --log-format and --log-level.
func newLogger(c *config, w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.logLevel) // validated
	ho := &slog.HandlerOptions{Level: level}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// usage writes the flag reference.
func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: rds-csi-plugin [flags]\n\nA CSI plugin for MikroTik ROSE Data Server (NVMe/TCP).\n"+
		"Every flag but --version and --check-config falls back to the environment variable %s<FLAG> (upper case, dashes as underscores).\n\n", envPrefix)
	var c config
	fs := newFlagSet(&c)
	fs.VisitAll(func(f *flag.Flag) {
		def := ""
		if f.DefValue != "" && f.DefValue != "false" {
			// Quoted for strings only, as flag.PrintDefaults does.
			def = fmt.Sprintf(" (default %q)", f.DefValue)
			if g, ok := f.Value.(flag.Getter); ok {
				if _, isString := g.Get().(string); !isString {
					def = " (default " + f.DefValue + ")"
				}
			}
		}
		env := ""
		if !noEnv[f.Name] {
			env = "  [" + envName(f.Name) + "]"
		}
		fmt.Fprintf(w, "  --%s%s\n      %s%s\n", f.Name, env, f.Usage, def)
	})
}
