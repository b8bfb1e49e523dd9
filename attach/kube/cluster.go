package kube

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/rdscsi"
)

// Index names on the informers' caches.
const (
	byPV     = "rds-csi.pv"     // VolumeAttachments by PersistentVolume name
	byHandle = "rds-csi.handle" // PersistentVolumes by volume handle
)

// Cluster keeps an attach.Manager in step with the VolumeAttachments of
// one CSI driver, and is what a cluster-backed controller serves from.
//
// Run fills informers for VolumeAttachments, PersistentVolumes and Nodes,
// rebuilds the Manager from them (Attachments, then Manager.Replace),
// closes Ready, and from then on applies every change the informers see:
// no API call per RPC. Give the Cluster, not the Manager, to
// rdscsi.NewControllerServer (it is an rdscsi.Attachments) and its
// NodeExists to rdscsi.WithNodeLookup.
//
// # Claims
//
// A VolumeAttachment of the driver that exists and is not being deleted
// claims its node, attached or not: the external-attacher creates no
// VolumeAttachment it will not publish, and one whose publish succeeded
// but that was never marked attached (a crash in between) must still hold
// the volume. Claims are applied in the order the informer delivers them,
// which is the API server's order, so every replica of the controller
// holds the same state; a claim the rules refuse (an RWO volume claimed
// from a second node) is held back and tried again when the volume's
// attachments change. Attach waits until the VolumeAttachment of the
// volume and node has been applied, then asks the Manager: replicas
// called at the same moment for two nodes of one RWO volume give the same
// answer, and the one they refuse gets FailedPrecondition. A publish with
// no VolumeAttachment (a CSI client other than the external-attacher)
// waits WithPublishWait and fails Unavailable. Detach is applied at once;
// the VolumeAttachment's deletion then confirms it. A VolumeAttachment
// being deleted holds nothing new, and loses its node when it is gone.
//
// # Leader
//
// Every replica mirrors the same truth and answers every RPC, because the
// CSI sidecars elect their leaders separately and the attacher's leader
// may sit in any pod. What must happen once per cluster happens only in
// the leader (WithLeaderElection; without it the Cluster is always the
// leader): Kubernetes Events, the attachment events that observers added
// with AddObserver receive (metrics counters) and the counts Counts
// reports (metrics gauges; other replicas report zero, so a sum over
// replicas is right). A replica that becomes leader reports the
// migrations that timed out since the previous leader last renewed its
// Lease (Manager.ReportTimedOut), so a timeout that passed while no
// controller ran is counted once. (A leader killed between a renewal and
// a timeout it had counted makes its successor count that one again.)
// Without leader election nothing records what was counted: Run reports
// every timed-out migration it finds at start, so each restart counts
// them again.
//
// Two replicas can disagree only in one case the attach/detach
// controller does not create: a replica that starts while two
// VolumeAttachments of one RWO volume claim two nodes, neither attached,
// orders them by creation time, which may differ from the order in which
// a running replica saw them.
//
// # Reconcile
//
// Every WithReconcileInterval, Run calls Manager.Reconcile with the Node
// cache: the attachments of a deleted node are cleared once it has been
// missing for the Manager's grace (attach.WithReconcileGrace).
type Cluster struct {
	cs      kubernetes.Interface
	driver  string
	m       *attach.Manager
	opts    options
	factory informers.SharedInformerFactory
	vas     cache.SharedIndexInformer
	vaList  storagelisters.VolumeAttachmentLister
	pvs     cache.SharedIndexInformer
	pvList  corelisters.PersistentVolumeLister
	nodes   *Nodes
	ready   chan struct{}
	leading atomic.Bool
	events  record.EventRecorder

	mu      sync.Mutex // guards the fields below and orders the rebuild with the handlers
	started bool
	built   bool
	applied map[types.UID]claim // VolumeAttachments applied, with what they claim
	// delivered numbers the VolumeAttachments in the order the informer
	// delivered them to the handlers: the order claims are tried in. The
	// cache itself may already hold objects whose events are still on
	// their way, and its creation times have one-second resolution, so
	// neither may decide which claim came first.
	delivered map[types.UID]uint64
	seq       uint64
}

// claim is what one VolumeAttachment asks for.
type claim struct{ volumeID, node, pv string }

// Option configures a Cluster.
type Option func(*options)

type options struct {
	logger      *slog.Logger
	election    *LeaderElection
	reconcile   time.Duration
	publishWait time.Duration
}

// WithLogger sets the logger. The default discards everything.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithReconcileInterval sets how often Run looks for attachments of
// deleted nodes. The default is 30 seconds.
func WithReconcileInterval(d time.Duration) Option { return func(o *options) { o.reconcile = d } }

// WithPublishWait bounds how long Attach waits for the VolumeAttachment
// of its volume and node to reach the informer. The default is 5 seconds;
// the external-attacher retries after the Unavailable that follows.
func WithPublishWait(d time.Duration) Option { return func(o *options) { o.publishWait = d } }

// NewCluster returns a Cluster that keeps m in step with the
// VolumeAttachments of driver read through cs. m should start empty and
// use an attach.MemStore: the cluster is the durable truth, and Run
// replaces m's state before it serves.
func NewCluster(cs kubernetes.Interface, driver string, m *attach.Manager, opts ...Option) (*Cluster, error) {
	o := options{reconcile: 30 * time.Second, publishWait: 5 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case cs == nil || m == nil:
		return nil, errors.New("kube: NewCluster: nil client or Manager")
	case driver == "":
		return nil, errors.New("kube: NewCluster: empty driver name")
	case o.reconcile <= 0 || o.publishWait <= 0:
		return nil, errors.New("kube: NewCluster: reconcile interval and publish wait must be positive")
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.election != nil {
		if err := o.election.check(); err != nil {
			return nil, err
		}
	}
	c := &Cluster{cs: cs, driver: driver, m: m, opts: o, ready: make(chan struct{}), applied: map[types.UID]claim{}, delivered: map[types.UID]uint64{}}
	c.leading.Store(o.election == nil)
	c.factory = informers.NewSharedInformerFactory(cs, 0)
	va := c.factory.Storage().V1().VolumeAttachments()
	c.vas, c.vaList = va.Informer(), va.Lister()
	pv := c.factory.Core().V1().PersistentVolumes()
	c.pvs, c.pvList = pv.Informer(), pv.Lister()
	c.nodes = NewNodes(c.factory)
	if err := c.vas.AddIndexers(cache.Indexers{byPV: c.indexVA}); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	if err := c.pvs.AddIndexers(cache.Indexers{byHandle: c.indexPV}); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	for _, inf := range []cache.SharedIndexInformer{c.vas, c.pvs, c.factory.Core().V1().Nodes().Informer()} {
		if err := inf.SetWatchErrorHandlerWithContext(c.watchError); err != nil {
			return nil, fmt.Errorf("kube: %w", err)
		}
	}
	if _, err := c.vas.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.onVA(obj) },
		UpdateFunc: func(_, obj any) { c.onVA(obj) },
		DeleteFunc: c.onVADeleted,
	}); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	if _, err := c.pvs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.onPV(obj) },
		UpdateFunc: func(_, obj any) { c.onPV(obj) },
	}); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	return c, nil
}

func (c *Cluster) indexVA(obj any) ([]string, error) {
	va, ok := obj.(*storagev1.VolumeAttachment)
	if !ok || va.Spec.Attacher != c.driver || va.Spec.Source.PersistentVolumeName == nil {
		return nil, nil
	}
	return []string{*va.Spec.Source.PersistentVolumeName}, nil
}

func (c *Cluster) indexPV(obj any) ([]string, error) {
	pv, ok := obj.(*corev1.PersistentVolume)
	if !ok || pv.Spec.CSI == nil || pv.Spec.CSI.Driver != c.driver {
		return nil, nil
	}
	return []string{pv.Spec.CSI.VolumeHandle}, nil
}

// watchError logs why an informer cannot list or watch; the informer
// retries with backoff on its own.
func (c *Cluster) watchError(ctx context.Context, r *cache.Reflector, err error) {
	if ctx.Err() != nil {
		return
	}
	c.opts.logger.Warn("kube: cannot list or watch the API server; retrying with backoff", "reflector", r.TypeDescription(), "err", err)
}

// Ready is closed once Run has rebuilt the Manager from the cluster:
// serve the gRPC socket and the metrics endpoint only after it.
func (c *Cluster) Ready() <-chan struct{} { return c.ready }

// Leading reports whether this replica is the leader (always true without
// WithLeaderElection).
func (c *Cluster) Leading() bool { return c.leading.Load() }

// NodeExists reports whether a Node of that name exists, from the Node
// informer's cache; it is an rdscsi.NodeLookup.
func (c *Cluster) NodeExists(ctx context.Context, nodeID string) (bool, error) {
	return c.nodes.Exists(ctx, nodeID)
}

// Run starts the informers and waits, retrying with backoff and logging
// each failure, until they hold the API server's state; then it rebuilds
// the Manager, closes Ready, and keeps the Manager in step (and leads,
// with WithLeaderElection) until ctx ends. Once synced, the informers
// serve from their cache while the API server is unreachable and resync
// when it is back. Run may be called once; it returns ctx's error, or an
// error from the rebuild.
func (c *Cluster) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return errors.New("kube: Cluster.Run called twice")
	}
	c.started = true
	c.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.cs.CoreV1().Events("")})
	c.events = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: c.driver + "-controller"})
	remove := c.m.AddObserver(c.postEvent)
	defer remove()

	c.factory.Start(ctx.Done())
	defer c.factory.Shutdown()
	defer cancel() // before Shutdown, which waits for the informers
	if err := c.waitSynced(ctx); err != nil {
		return err
	}
	for {
		err := c.rebuild(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrInconsistent) {
			return err
		}
		// Fail closed, but do not exit: the attacher may be about to
		// resolve it, and an operator reads the log.
		c.opts.logger.Error("kube: cannot rebuild the attachment state; not serving until the cluster is consistent", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
		}
	}
	if c.opts.election == nil {
		c.m.ReportTimedOut(time.Time{}) // nobody can say which were counted
	}
	close(c.ready)

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before wg.Wait
	if c.opts.election != nil {
		wg.Go(func() { c.elect(ctx) })
	}
	t := time.NewTicker(c.opts.reconcile)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			c.reconcile(ctx)
		}
	}
}

// waitSynced waits for the informers' first list. After a second, and
// then every 10 seconds, it logs that it is waiting and why: the error of
// a request for the server's version, since a refused connection during
// the informers' first list reaches no watch error handler.
func (c *Cluster) waitSynced(ctx context.Context) error {
	synced := []cache.InformerSynced{c.vas.HasSynced, c.pvs.HasSynced, c.nodes.synced}
	start := time.Now()
	for interval := time.Second; ; interval = 10 * time.Second {
		wait, stop := context.WithTimeout(ctx, interval)
		ok := cache.WaitForCacheSync(wait.Done(), synced...)
		stop()
		switch {
		case ok:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		}
		attrs := []any{"waited", time.Since(start).Round(time.Second)}
		if _, err := c.cs.Discovery().ServerVersion(); err != nil {
			attrs = append(attrs, "err", err)
		}
		c.opts.logger.Warn("kube: still waiting for the API server before serving", attrs...)
	}
}

// rebuild replaces the Manager's state with the cluster's, ordered with
// the event handlers by c.mu: a handler that ran before it saw an object
// the rebuild includes, one after it applies its change on top.
func (c *Cluster) rebuild(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	objs, err := c.vaList.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("kube: %w", err)
	}
	as, err := Attachments(c.driver, objs, c.pvList.Get)
	if err != nil {
		return err
	}
	if err := c.m.Replace(ctx, as); err != nil {
		return fmt.Errorf("kube: rebuild: %w", err)
	}
	c.built = true
	pvNames := map[string]bool{}
	for _, va := range objs {
		if cl, ok := c.claimOf(va); ok {
			c.applied[va.UID] = cl
			if !va.Status.Attached {
				pvNames[cl.pv] = true
			}
		}
	}
	// Claims of VolumeAttachments not yet marked attached; Replace has
	// the attached ones.
	for name := range pvNames {
		c.resyncLocked(ctx, name)
	}
	cnt := c.m.Counts()
	c.opts.logger.Info("kube: attachment state rebuilt from the cluster", "volume_attachments", len(objs),
		"volumes", cnt.Volumes, "node_attachments", cnt.NodeAttachments, "migrations", cnt.Migrations)
	return nil
}

// claimOf returns what va claims, or false when it is not the driver's,
// names no PersistentVolume the cache holds, or is being deleted.
func (c *Cluster) claimOf(va *storagev1.VolumeAttachment) (claim, bool) {
	if va.Spec.Attacher != c.driver || va.Spec.Source.PersistentVolumeName == nil || va.DeletionTimestamp != nil {
		return claim{}, false
	}
	name := *va.Spec.Source.PersistentVolumeName
	pv, err := c.pvList.Get(name)
	if err != nil || pv.Spec.CSI == nil || pv.Spec.CSI.Driver != c.driver {
		return claim{}, false
	}
	return claim{volumeID: pv.Spec.CSI.VolumeHandle, node: va.Spec.NodeName, pv: name}, true
}

func (c *Cluster) onVA(obj any) {
	va, ok := obj.(*storagev1.VolumeAttachment)
	if !ok || va.Spec.Attacher != c.driver || va.Spec.Source.PersistentVolumeName == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.delivered[va.UID]; !ok {
		c.seq++
		c.delivered[va.UID] = c.seq
	}
	if !c.built {
		return // the rebuild will see it
	}
	if cl, ok := c.claimOf(va); ok {
		c.applied[va.UID] = cl
	}
	c.resyncLocked(context.Background(), *va.Spec.Source.PersistentVolumeName)
}

func (c *Cluster) onVADeleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	va, ok := obj.(*storagev1.VolumeAttachment)
	if !ok || va.Spec.Attacher != c.driver {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.delivered, va.UID)
	if !c.built {
		return
	}
	cl, ok := c.applied[va.UID]
	delete(c.applied, va.UID)
	if !ok {
		// Deleting when first seen: what it held comes from its PV.
		if cl, ok = c.claimOf(withoutDeletion(va)); !ok {
			return
		}
	}
	ctx := context.Background()
	if err := c.m.Detach(ctx, cl.volumeID, cl.node); err != nil {
		c.opts.logger.Error("kube: detach after VolumeAttachment deletion", "volume", cl.volumeID, "node", cl.node, "err", err)
	}
	c.resyncLocked(ctx, cl.pv)
}

func withoutDeletion(va *storagev1.VolumeAttachment) *storagev1.VolumeAttachment {
	cp := va.DeepCopy()
	cp.DeletionTimestamp = nil
	return cp
}

// onPV applies the claims of a PersistentVolume's VolumeAttachments that
// reached the cache before it did.
func (c *Cluster) onPV(obj any) {
	pv, ok := obj.(*corev1.PersistentVolume)
	if !ok || pv.Spec.CSI == nil || pv.Spec.CSI.Driver != c.driver {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.built {
		return
	}
	vas, _ := c.vas.GetIndexer().ByIndex(byPV, pv.Name)
	for _, obj := range vas {
		va := obj.(*storagev1.VolumeAttachment)
		if _, delivered := c.delivered[va.UID]; delivered && va.DeletionTimestamp == nil {
			if cl, ok := c.claimOf(va); ok {
				c.applied[va.UID] = cl
			}
		}
	}
	if len(vas) > 0 {
		c.resyncLocked(context.Background(), pv.Name)
	}
}

// resyncLocked applies the claims of the VolumeAttachments of one
// PersistentVolume that are not being deleted, in the order the informer
// delivered them, and skips those the Manager refuses (they stay in the
// cache and are tried again at the next change), those whose event has
// not reached the handlers yet (their handler resyncs) and those of nodes
// known to be gone (cleared by reconcile, they must not come back). Every
// replica gets the events in the API server's order, so the first claim
// delivered wins everywhere, however far each replica's cache has run
// ahead of its handlers.
func (c *Cluster) resyncLocked(ctx context.Context, pvName string) {
	pv, err := c.pvList.Get(pvName)
	if err != nil || pv.Spec.CSI == nil || pv.Spec.CSI.Driver != c.driver {
		return
	}
	objs, _ := c.vas.GetIndexer().ByIndex(byPV, pvName)
	vas := make([]*storagev1.VolumeAttachment, 0, len(objs))
	for _, obj := range objs {
		va := obj.(*storagev1.VolumeAttachment)
		if _, ok := c.delivered[va.UID]; ok && va.DeletionTimestamp == nil {
			vas = append(vas, va)
		}
	}
	slices.SortFunc(vas, func(a, b *storagev1.VolumeAttachment) int {
		return cmp.Compare(c.delivered[a.UID], c.delivered[b.UID])
	})
	req := attach.Request{VolumeID: pv.Spec.CSI.VolumeHandle, Mode: attach.Exclusive}
	if migratable(pv) {
		req.Mode = attach.Migratable
		if d, err := migrationTimeout(pv); err == nil {
			req.MigrationTimeout = d
		}
	}
	for _, va := range vas {
		if exists, err := c.nodes.Exists(ctx, va.Spec.NodeName); err == nil && !exists {
			continue
		}
		req.NodeID = va.Spec.NodeName
		if err := c.m.Attach(ctx, req); err != nil {
			c.opts.logger.Debug("kube: claim held back", "volume_attachment", va.Name, "err", err)
		}
	}
}

// Attach waits until the VolumeAttachment of req's volume and node has
// been applied, then attaches through the Manager. Without such a
// VolumeAttachment within WithPublishWait (or ctx) it fails with an error
// wrapping rdscsi.ErrUnavailable.
func (c *Cluster) Attach(ctx context.Context, req attach.Request) error {
	wait, cancel := context.WithTimeout(ctx, c.opts.publishWait)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !c.claimApplied(req.VolumeID, req.NodeID) {
		select {
		case <-wait.Done():
			if err := ctx.Err(); err != nil {
				return err
			}
			return fmt.Errorf("%w: no VolumeAttachment of driver %s for volume %s and node %q has reached this controller yet",
				rdscsi.ErrUnavailable, c.driver, req.VolumeID, req.NodeID)
		case <-tick.C:
		}
	}
	return c.m.Attach(ctx, req)
}

// claimApplied reports whether a VolumeAttachment claiming volumeID for node
// has reached the handlers and been applied.
func (c *Cluster) claimApplied(volumeID, node string) bool {
	pvs, _ := c.pvs.GetIndexer().ByIndex(byHandle, volumeID)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, obj := range pvs {
		vas, _ := c.vas.GetIndexer().ByIndex(byPV, obj.(*corev1.PersistentVolume).Name)
		for _, obj := range vas {
			va := obj.(*storagev1.VolumeAttachment)
			_, delivered := c.delivered[va.UID]
			if cl, ok := c.applied[va.UID]; ok && delivered && va.DeletionTimestamp == nil && cl.volumeID == volumeID && cl.node == node {
				return true
			}
		}
	}
	return false
}

// Detach detaches through the Manager, then lets a claim held back by the
// detached node in.
func (c *Cluster) Detach(ctx context.Context, volumeID, nodeID string) error {
	if err := c.m.Detach(ctx, volumeID, nodeID); err != nil {
		return err
	}
	pvs, _ := c.pvs.GetIndexer().ByIndex(byHandle, volumeID)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, obj := range pvs {
		c.resyncLocked(ctx, obj.(*corev1.PersistentVolume).Name)
	}
	return nil
}

// Get returns the Manager's attachment of volumeID.
func (c *Cluster) Get(volumeID string) (attach.Attachment, bool) { return c.m.Get(volumeID) }

// ListByNode returns the Manager's attachments of nodeID, so that
// rdscsi.WithMaxVolumesPerNode works on a Cluster.
func (c *Cluster) ListByNode(nodeID string) []attach.Attachment { return c.m.ListByNode(nodeID) }

// Counts returns the Manager's counts in the leader and zero counts in
// the other replicas, so that the gauges of all replicas sum to the
// cluster's. With it and AddObserver, a Cluster is a
// metrics.AttachmentSource.
func (c *Cluster) Counts() attach.Counts {
	cnt := c.m.Counts()
	if !c.leading.Load() {
		return attach.Counts{}
	}
	return cnt
}

// AddObserver adds f to the Manager's observers; f receives the events
// that happen while this replica leads.
func (c *Cluster) AddObserver(f func(attach.Event)) (remove func()) {
	return c.m.AddObserver(func(e attach.Event) {
		if c.leading.Load() {
			f(e)
		}
	})
}

// reconcile clears the attachments of deleted nodes.
func (c *Cluster) reconcile(ctx context.Context) {
	removed, err := c.m.Reconcile(ctx, c.nodes.Exists)
	if err != nil {
		c.opts.logger.Warn("kube: reconcile", "err", err)
	}
	for _, a := range removed {
		c.opts.logger.Info("kube: cleared the attachments of a deleted node", "volume", a.VolumeID, "nodes", a.Nodes)
	}
}

// postEvent posts an Event on the PersistentVolume of a migration or a
// reconcile, in the leader only.
func (c *Cluster) postEvent(e attach.Event) {
	if !c.leading.Load() {
		return
	}
	var typ, reason, msg string
	switch e.Kind {
	case attach.EventMigrationStarted:
		typ, reason, msg = corev1.EventTypeNormal, "MigrationStarted", fmt.Sprintf("live migration started: node %s joined", e.NodeID)
	case attach.EventMigrationCompleted:
		typ, reason, msg = corev1.EventTypeNormal, "MigrationCompleted", fmt.Sprintf("live migration ended after %s: node %s left", e.Elapsed.Round(time.Second), e.NodeID)
		if e.TimedOut {
			typ, msg = corev1.EventTypeWarning, msg+", after its timeout"
		}
	case attach.EventMigrationTimedOut:
		typ, reason, msg = corev1.EventTypeWarning, "MigrationTimedOut", fmt.Sprintf("live migration to node %s passed its timeout after %s; no further node may attach until one side detaches", e.NodeID, e.Elapsed.Round(time.Second))
	case attach.EventReconciled:
		typ, reason, msg = corev1.EventTypeWarning, "AttachmentReconciled", fmt.Sprintf("node %s no longer exists; its attachment was cleared", e.NodeID)
	default:
		return
	}
	pvs, _ := c.pvs.GetIndexer().ByIndex(byHandle, e.VolumeID)
	for _, obj := range pvs {
		c.events.Event(obj.(*corev1.PersistentVolume), typ, reason, msg)
	}
}
