package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/attach/kube"
)

// --cluster values.
const (
	clusterAuto = "auto"
	clusterOn   = "on"
	clusterOff  = "off"
)

// envInPod is set by the kubelet in every container of a pod; --cluster
// auto turns the cluster on when it is.
const envInPod = "KUBERNETES_SERVICE_HOST"

// serviceAccountNamespaceFile holds the pod's namespace, the default of
// --leader-election-namespace. A variable so that tests can point it
// elsewhere.
var serviceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// checkCluster resolves --cluster and checks the flags of cluster mode.
// Only the controller reads the cluster: in mode node they are ignored.
func (c *config) checkCluster() error {
	switch c.cluster {
	case clusterAuto, clusterOn, clusterOff:
	default:
		return fmt.Errorf("%s: must be auto, on or off, got %q", c.src("cluster"), c.cluster)
	}
	if !c.hasController() {
		return nil
	}
	c.clusterOn = c.cluster == clusterOn || (c.cluster == clusterAuto && (c.inPod || c.kubeconfig != ""))
	if !c.clusterOn {
		// Flags that would do nothing: the operator expects the cluster.
		fix := "set --cluster on"
		if c.cluster == clusterAuto {
			fix = "give --kubeconfig"
		}
		for _, name := range []string{"kubeconfig", "leader-election", "reconcile-grace", "reconcile-interval"} {
			if c.source[name] != "" && (name != "leader-election" || c.leaderElection) {
				return fmt.Errorf("%s needs the cluster, but %s; %s", c.src(name), c.clusterWhy(), fix)
			}
		}
		return nil
	}
	for _, f := range []struct{ name, why string }{
		{"state-file", "the attachments are the cluster's VolumeAttachments"},
		{"known-nodes", "nodes are looked up in the cluster's Nodes"},
		{"state-truncate-at-corruption", "there is no state file"},
	} {
		if c.source[f.name] != "" {
			return fmt.Errorf("%s cannot be used with the cluster as the attachment truth (%s): %s; remove it, or set --cluster off",
				c.src(f.name), c.clusterWhy(), f.why)
		}
	}
	if c.kubeconfig == "" && !c.inPod {
		return fmt.Errorf("%s, but this is not a pod (%s is unset): give --kubeconfig", c.clusterWhy(), envInPod)
	}
	if c.reconcileGrace < 0 {
		return fmt.Errorf("%s: must be 0 (clear at once) or positive, got %v", c.src("reconcile-grace"), c.reconcileGrace)
	}
	if c.reconcileInterval <= 0 {
		return fmt.Errorf("%s: must be positive, got %v", c.src("reconcile-interval"), c.reconcileInterval)
	}
	if !c.leaderElection {
		return nil
	}
	if c.leNamespace == "" {
		if b, err := os.ReadFile(serviceAccountNamespaceFile); err == nil {
			c.leNamespace = strings.TrimSpace(string(b))
		}
		if c.leNamespace == "" {
			return fmt.Errorf("%s is required with %s outside a pod (%s is not readable)",
				c.src("leader-election-namespace"), c.src("leader-election"), serviceAccountNamespaceFile)
		}
	}
	if errs := validation.IsDNS1123Label(c.leNamespace); len(errs) > 0 {
		return fmt.Errorf("%s: want a namespace name, such as kube-system, got %q: %s", c.src("leader-election-namespace"), c.leNamespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(c.leaseName()); len(errs) > 0 {
		return fmt.Errorf("%s: the leader election Lease is named after it, and %q is not a Kubernetes name: %s",
			c.src("driver-name"), c.leaseName(), strings.Join(errs, "; "))
	}
	if c.leIdentity == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return fmt.Errorf("%s is required: the host name is unknown (%v)", c.src("leader-election-identity"), err)
		}
		c.leIdentity = h
	}
	retry, renew, lease := c.src("leader-election-retry-period"), c.src("leader-election-renew-deadline"), c.src("leader-election-lease-duration")
	switch {
	case c.leRetryPeriod <= 0:
		return fmt.Errorf("%s: must be positive, got %v", retry, c.leRetryPeriod)
	case c.leRenewDeadline <= time.Duration(leaderelection.JitterFactor*float64(c.leRetryPeriod)):
		return fmt.Errorf("%s (%v) must be longer than %s (%v) times %v, the retries' jitter", renew, c.leRenewDeadline, retry, c.leRetryPeriod, leaderelection.JitterFactor)
	case c.leLeaseDuration <= c.leRenewDeadline:
		return fmt.Errorf("%s (%v) must be longer than %s (%v)", lease, c.leLeaseDuration, renew, c.leRenewDeadline)
	}
	return nil
}

// clusterWhy says what --cluster resolved to and why, for errors.
func (c *config) clusterWhy() string {
	switch {
	case c.cluster != clusterAuto:
		return fmt.Sprintf("%s is %s", c.src("cluster"), c.cluster)
	case c.clusterOn && c.kubeconfig != "":
		return fmt.Sprintf("%s is auto, on since %s is set", c.src("cluster"), c.src("kubeconfig"))
	case c.clusterOn:
		return fmt.Sprintf("%s is auto, on in a pod (%s is set)", c.src("cluster"), envInPod)
	}
	return fmt.Sprintf("%s is auto, off outside a pod without --kubeconfig", c.src("cluster"))
}

// leaseName is the leader election Lease's name, derived from the driver
// name so that two drivers in one namespace do not share it.
func (c *config) leaseName() string {
	return strings.ReplaceAll(c.driverName, ".", "-") + "-controller"
}

// restConfig is the client configuration of the cluster: --kubeconfig,
// or the pod's service account.
func (c *config) restConfig(version string) (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if c.kubeconfig != "" {
		if rc, err = clientcmd.BuildConfigFromFlags("", c.kubeconfig); err != nil {
			return nil, fmt.Errorf("%s: %w", c.src("kubeconfig"), err)
		}
	} else if rc, err = rest.InClusterConfig(); err != nil {
		return nil, fmt.Errorf("%s: the in-cluster configuration (the pod's service account): %w; give --kubeconfig", c.clusterWhy(), err)
	}
	rc.UserAgent = "rds-csi-plugin/" + version
	return rc, nil
}

// openCluster builds the Manager and the Cluster that keeps it in step
// with the cluster's VolumeAttachments, has p.rec observe the Cluster
// (only the leader reports) and starts both. The Cluster is not ready
// yet: waitCluster waits for it.
func (p *plugin) openCluster(c *config, version string, logger *slog.Logger) error {
	rc, err := c.restConfig(version)
	if err != nil {
		return err
	}
	kubeClient, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("%s: %w", c.src("kubeconfig"), err)
	}
	// client-go logs through klog (the leader elector, for one): into the
	// plugin's logger, in --log-format, like everything else.
	klog.SetSlogLogger(logger.With("component", "client-go"))

	// The Manager holds no durable state here: the cluster is the truth,
	// and Run replaces the Manager's state with it before serving.
	p.manager, err = attach.NewManager(context.Background(), attach.NewMemStore(),
		attach.WithLogger(logger.With("component", "attach")),
		attach.WithReconcileGrace(c.reconcileGrace))
	if err != nil {
		return err
	}
	p.startManager(logger)
	kubeLogger := logger.With("component", "kube")
	opts := []kube.Option{kube.WithLogger(kubeLogger), kube.WithReconcileInterval(c.reconcileInterval)}
	if c.leaderElection {
		opts = append(opts, kube.WithLeaderElection(kube.LeaderElection{
			Namespace:     c.leNamespace,
			Name:          c.leaseName(),
			Identity:      c.leIdentity,
			LeaseDuration: c.leLeaseDuration,
			RenewDeadline: c.leRenewDeadline,
			RetryPeriod:   c.leRetryPeriod,
		}))
	}
	if p.cluster, err = kube.NewCluster(kubeClient, c.driverName, p.manager, opts...); err != nil {
		return err
	}
	// Before Run: the events of the rebuild (timeouts that passed while
	// no controller ran) are counted.
	if err := p.rec.ObserveAttachments(p.cluster); err != nil {
		return err
	}
	p.apiServer = rc.Host
	// Its own context: Run must outlive SIGTERM until the gRPC server has
	// stopped, then release the Lease (stopCluster).
	ctx, cancel := context.WithCancel(context.Background())
	p.clusterStop = cancel
	p.clusterDone = make(chan struct{})
	go func() {
		defer close(p.clusterDone)
		p.clusterErr = p.cluster.Run(ctx)
	}()
	return nil
}

// logTruth says where the controller's attachments come from.
func (p *plugin) logTruth(c *config, logger *slog.Logger) {
	switch {
	case p.cluster != nil:
		election := "off"
		if c.leaderElection {
			election = "lease " + c.leNamespace + "/" + c.leaseName() + " as " + c.leIdentity
		}
		logger.Info("rds-csi-plugin: attachment truth: cluster", "driver", c.driverName, "api_server", p.apiServer, "leader_election", election)
	case p.store != nil:
		logger.Info("rds-csi-plugin: attachment truth: state file", "state_file", c.stateFile, "known_nodes", slices.Sorted(maps.Keys(c.knownNodeIDs())))
	}
}

// waitCluster waits until the Cluster has rebuilt the attachment state
// from the cluster: before that the controller must neither answer RPCs
// nor be scraped. An API server that cannot be reached is waited for, not
// a reason to exit: a crash loop would not bring it back sooner. The
// Cluster says meanwhile why it waits (kube: still waiting for the API
// server before serving, with the error).
func (p *plugin) waitCluster(ctx context.Context, logger *slog.Logger) error {
	select {
	case <-p.cluster.Ready():
		return nil
	default:
	}
	logger.Info("rds-csi-plugin: waiting for the Kubernetes API server before serving", "api_server", p.apiServer)
	select {
	case <-p.cluster.Ready():
		return nil
	case <-p.clusterDone:
		return fmt.Errorf("kubernetes: %w", p.clusterErr)
	case <-ctx.Done():
		return fmt.Errorf("waiting for the Kubernetes API server: %w", context.Cause(ctx))
	}
}

// clusterStopTimeout bounds how long shutdown waits for the Cluster's Run
// to return, within the 5 s run keeps from SIGTERM to exit (see
// gracePeriod). Run releases the Lease first, one request; stopping
// client-go's informers can take longer: a reflector backing off from a
// refused connection does not watch its stop channel while it sleeps.
const clusterStopTimeout = time.Second

// stopCluster stops the Cluster's Run and waits for it, for at most
// clusterStopTimeout: with leader election, the Lease is released on the
// way out. Run's errors other than its context's end come before Ready,
// and waitCluster reports them.
func (p *plugin) stopCluster(logger *slog.Logger) {
	if p.clusterStop == nil {
		return
	}
	p.clusterStop()
	p.clusterStop = nil
	t := time.NewTimer(clusterStopTimeout)
	defer t.Stop()
	select {
	case <-p.clusterDone:
	case <-t.C:
		// Expected when stopped while the API server is unreachable at
		// start: nothing was served, there is no Lease to release.
		level := slog.LevelDebug
		select {
		case <-p.cluster.Ready():
			level = slog.LevelWarn
		default:
		}
		logger.Log(context.Background(), level, "rds-csi-plugin: the Kubernetes client did not stop in time; exiting without waiting for it", "waited", clusterStopTimeout)
	}
}
