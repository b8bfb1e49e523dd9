package kube_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/attach/kube"
	"github.com/srvlab/rds-csi/internal/testutil"
	"github.com/srvlab/rds-csi/metrics"
	"github.com/srvlab/rds-csi/rdscsi"
)

// counting is a metrics.Recorder that counts what AttachObserver reports
// into the migration and reconcile counters.
type counting struct {
	metrics.Noop
	mu         sync.Mutex
	migrations map[string]int
	reconciled int
}

func (r *counting) Migration(_ context.Context, result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.migrations == nil {
		r.migrations = map[string]int{}
	}
	r.migrations[result]++
}

func (r *counting) Reconcile(_ context.Context, _ string, n int) {
	r.mu.Lock()
	r.reconciled += n
	r.mu.Unlock()
}

func (r *counting) get() (timeouts, reconciled int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.migrations["timeout"], r.reconciled
}

// runCluster starts a Cluster over a new Manager and waits until it is
// ready; it stops when t ends or when the returned cancel is called.
func runCluster(t *testing.T, ctx context.Context, cs kubernetes.Interface, mopts []attach.Option, opts ...kube.Option) (*kube.Cluster, *attach.Manager, *counting, context.CancelFunc) {
	t.Helper()
	m, err := attach.NewManager(ctx, attach.NewMemStore(), mopts...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kube.NewCluster(cs, driver, m, append([]kube.Option{kube.WithPublishWait(2 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	rec := &counting{}
	remove := c.AddObserver(metrics.AttachObserver(rec))
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
		remove()
		m.Close()
	})
	t.Cleanup(stop)
	select {
	case <-c.Ready():
	case err := <-done:
		t.Fatalf("Run before Ready: %v", err)
	case <-ctx.Done():
		t.Fatal("not ready")
	}
	return c, m, rec, stop
}

// objects creates PVs, Nodes and VolumeAttachments as the provisioner,
// the kubelet and the attach/detach controller would.
type objects struct {
	t   *testing.T
	ctx context.Context
	cs  kubernetes.Interface
}

func (o objects) pv(name string, block, rwx bool, attrs map[string]string) {
	o.t.Helper()
	if _, err := o.cs.CoreV1().PersistentVolumes().Create(o.ctx, newPV(name, "vol-"+name, block, rwx, attrs), metav1.CreateOptions{}); err != nil {
		o.t.Fatal(err)
	}
}

func (o objects) node(name string) {
	o.t.Helper()
	if _, err := o.cs.CoreV1().Nodes().Create(o.ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		o.t.Fatal(err)
	}
}

func vaName(pv, node string) string { return "va-" + pv + "-" + node }

// va creates the VolumeAttachment of pv on node, marked attached or not.
func (o objects) va(pv, node string, attached bool) {
	o.t.Helper()
	va, err := o.cs.StorageV1().VolumeAttachments().Create(o.ctx, newVA(vaName(pv, node), driver, pv, node, false, time.Time{}), metav1.CreateOptions{})
	if err != nil {
		o.t.Fatal(err)
	}
	if attached {
		va.Status.Attached = true
		if _, err := o.cs.StorageV1().VolumeAttachments().UpdateStatus(o.ctx, va, metav1.UpdateOptions{}); err != nil {
			o.t.Fatal(err)
		}
	}
}

func (o objects) deleteVA(pv, node string) {
	o.t.Helper()
	if err := o.cs.StorageV1().VolumeAttachments().Delete(o.ctx, vaName(pv, node), metav1.DeleteOptions{}); err != nil {
		o.t.Fatal(err)
	}
}

// eventually polls cond for up to 20 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func nodesOf(m interface {
	Get(string) (attach.Attachment, bool)
}, vol string) string {
	a, _ := m.Get(vol)
	return strings.Join(a.Nodes, ",")
}

// TestClusterInStep: the Manager follows the VolumeAttachments; a publish
// waits for its VolumeAttachment and is decided by the claims, so an RWO
// volume never gets a second node; a claim held back gets in once the
// holder detaches; a publish without a VolumeAttachment is Unavailable.
func TestClusterInStep(t *testing.T) {
	_, ctx, cs := startCluster(t)
	o := objects{t, ctx, cs}
	for _, n := range []string{"n1", "n2", "n3"} {
		o.node(n)
	}
	o.pv("a", false, false, nil)
	o.pv("b", false, false, nil)
	o.pv("vm", true, true, map[string]string{rdscsi.ParamMigrationTimeout: "600"})
	o.va("a", "n1", true)
	c, m, _, _ := runCluster(t, ctx, cs, nil)
	if got := nodesOf(c, "vol-a"); got != "n1" {
		t.Fatalf("rebuilt a on %q, want n1", got)
	}

	// A claim that is not attached yet holds the volume already.
	o.va("b", "n2", false)
	eventually(t, "b claimed by n2", func() bool { return nodesOf(c, "vol-b") == "n2" })
	rwo := attach.Request{VolumeID: "vol-b", Mode: attach.Exclusive}
	o.va("b", "n3", false)
	req := rwo
	req.NodeID = "n3"
	if err := c.Attach(ctx, req); !errors.Is(err, attach.ErrConflict) {
		t.Fatalf("publish of b to a second node: %v, want ErrConflict", err)
	}
	req.NodeID = "n2"
	if err := c.Attach(ctx, req); err != nil {
		t.Fatalf("publish of b to its claimant: %v", err)
	}
	// The attacher detaches n2 as it does: the VolumeAttachment is
	// deleted (its finalizer keeps it while deleting), then unpublished.
	// The claim of n3, held back, gets in.
	va, err := cs.StorageV1().VolumeAttachments().Get(ctx, vaName("b", "n2"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	va.Finalizers = []string{"external-attacher/test"}
	if _, err := cs.StorageV1().VolumeAttachments().Update(ctx, va, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	o.deleteVA("b", "n2")
	time.Sleep(200 * time.Millisecond)
	if got := nodesOf(c, "vol-b"); got != "n2" {
		t.Fatalf("b on %q while its VolumeAttachment is being deleted, want still n2", got)
	}
	if err := c.Detach(ctx, "vol-b", "n2"); err != nil {
		t.Fatal(err)
	}
	if got := nodesOf(c, "vol-b"); got != "n3" {
		t.Fatalf("after detaching n2, b is on %q, want n3", got)
	}
	req.NodeID = "n3"
	if err := c.Attach(ctx, req); err != nil {
		t.Fatalf("publish of b to n3 after n2 left: %v", err)
	}

	// Deleting a VolumeAttachment detaches its node.
	o.deleteVA("a", "n1")
	eventually(t, "a detached", func() bool { return nodesOf(c, "vol-a") == "" })

	// A migration: a second claim of a migratable volume joins.
	o.va("vm", "n1", true)
	o.va("vm", "n2", false)
	eventually(t, "vm on two nodes", func() bool { return nodesOf(c, "vol-vm") == "n1,n2" })
	if a, _ := c.Get("vol-vm"); a.MigrationTimeout != 10*time.Minute {
		t.Fatalf("migration timeout %v, want the PV's 600s", a.MigrationTimeout)
	}
	checkEvent(t, ctx, cs, "vm", "MigrationStarted")

	// No VolumeAttachment: Unavailable once the wait is over.
	start := time.Now()
	err = c.Attach(ctx, attach.Request{VolumeID: "vol-a", NodeID: "n2", Mode: attach.Exclusive})
	if !errors.Is(err, rdscsi.ErrUnavailable) || time.Since(start) < 2*time.Second {
		t.Fatalf("publish without a VolumeAttachment: %v after %v, want ErrUnavailable after the 2s wait", err, time.Since(start))
	}
	if _, ok := m.Get("vol-a"); ok {
		t.Fatal("a publish without a VolumeAttachment attached the volume")
	}
	if cnt := c.Counts(); cnt != (attach.Counts{Volumes: 2, NodeAttachments: 3, Migrations: 1}) {
		t.Fatalf("Counts %+v", cnt)
	}
	o.deleteVA("vm", "n1") // the source node leaves: the migration completed
	eventually(t, "vm on n2 alone", func() bool { return nodesOf(c, "vol-vm") == "n2" })
	checkEvent(t, ctx, cs, "vm", "MigrationCompleted")
}

// TestClusterMigrationTimedOutWhileDown is scenario 2: a migration that
// started ten minutes ago with a five-minute timeout is timed out at the
// rebuild, counted once, and a third node is refused.
func TestClusterMigrationTimedOutWhileDown(t *testing.T) {
	_, ctx, cs := startCluster(t)
	o := objects{t, ctx, cs}
	for _, n := range []string{"n1", "n2", "n3"} {
		o.node(n)
	}
	o.pv("vm", true, true, map[string]string{rdscsi.ParamMigrationTimeout: "300"})
	o.va("vm", "n1", true)
	o.va("vm", "n2", true)
	// The server stamps creation times; the controller's clock is ten
	// minutes later instead.
	later := func() time.Time { return time.Now().Add(10 * time.Minute) }
	c, _, rec, _ := runCluster(t, ctx, cs, []attach.Option{attach.WithClock(later)})
	if cnt := c.Counts(); cnt.Migrations != 1 || cnt.TimedOutMigrations != 1 {
		t.Fatalf("Counts %+v, want one timed-out migration", cnt)
	}
	c.Counts()
	if timeouts, _ := rec.get(); timeouts != 1 {
		t.Fatalf("timeouts counted %d, want 1", timeouts)
	}
	o.va("vm", "n3", false)
	err := c.Attach(ctx, attach.Request{VolumeID: "vol-vm", NodeID: "n3", Mode: attach.Migratable})
	if !errors.Is(err, attach.ErrMigrationTimedOut) {
		t.Fatalf("third node: %v, want ErrMigrationTimedOut", err)
	}
	if timeouts, _ := rec.get(); timeouts != 1 {
		t.Fatalf("timeouts counted %d after the refusal, want still 1", timeouts)
	}
	checkEvent(t, ctx, cs, "vm", "MigrationTimedOut")
}

// checkEvent waits for an Event with reason on the PersistentVolume pv.
func checkEvent(t *testing.T, ctx context.Context, cs kubernetes.Interface, pv, reason string) {
	t.Helper()
	sel := fields.Set{"involvedObject.kind": "PersistentVolume", "involvedObject.name": pv, "reason": reason}.String()
	eventually(t, "Event "+reason+" on "+pv, func() bool {
		evs, err := cs.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{FieldSelector: sel})
		return err == nil && len(evs.Items) > 0
	})
}

// TestClusterReconcileDeletedNode is scenario 3: once a deleted node has
// been gone for the grace period its attachments are cleared, an Event is
// posted on the PersistentVolume and the reconcile counter moves; a
// VolumeAttachment of the deleted node that changes later does not bring
// it back.
func TestClusterReconcileDeletedNode(t *testing.T) {
	_, ctx, cs := startCluster(t)
	o := objects{t, ctx, cs}
	o.node("n1")
	o.node("gone")
	o.pv("a", false, false, nil)
	o.pv("b", false, false, nil)
	o.va("a", "gone", true)
	o.va("b", "n1", true)
	const grace = 2 * time.Second
	c, _, rec, _ := runCluster(t, ctx, cs, []attach.Option{attach.WithReconcileGrace(grace)}, kube.WithReconcileInterval(200*time.Millisecond))
	deleted := time.Now()
	if err := cs.CoreV1().Nodes().Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a cleared", func() bool { return nodesOf(c, "vol-a") == "" })
	if since := time.Since(deleted); since < grace {
		t.Fatalf("cleared after %v, before the %v grace", since, grace)
	}
	if got := nodesOf(c, "vol-b"); got != "n1" {
		t.Fatalf("b on %q, want n1 untouched", got)
	}
	if _, reconciled := rec.get(); reconciled != 1 {
		t.Fatalf("reconcile counter %d, want 1", reconciled)
	}
	checkEvent(t, ctx, cs, "a", "AttachmentReconciled")

	// The attacher updates the orphaned VolumeAttachment (a detach error,
	// say): the node stays cleared.
	va, err := cs.StorageV1().VolumeAttachments().Get(ctx, vaName("a", "gone"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	va.Status.DetachError = &storagev1.VolumeError{Message: "node gone"}
	if _, err := cs.StorageV1().VolumeAttachments().UpdateStatus(ctx, va, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if got := nodesOf(c, "vol-a"); got != "" {
		t.Fatalf("a is back on %q", got)
	}
	if _, reconciled := rec.get(); reconciled != 1 {
		t.Fatalf("reconcile counter %d, want still 1", reconciled)
	}
}

// TestClusterLeader: two replicas mirror the same state, only the leader
// reports counts and counts events, the other takes over when the leader
// stops, and a replica that takes over counts the timeouts that passed
// after the previous leader's last renewal, and only those.
func TestClusterLeader(t *testing.T) {
	_, ctx, cs := startCluster(t)
	o := objects{t, ctx, cs}
	for _, n := range []string{"n1", "n2"} {
		o.node(n)
	}
	o.pv("a", false, false, nil)
	o.va("a", "n1", true)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rds"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	le := func(id string) kube.Option {
		return kube.WithLeaderElection(kube.LeaderElection{Namespace: "rds", Name: "rds-csi", Identity: id,
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond})
	}
	c1, _, _, stop1 := runCluster(t, ctx, cs, nil, le("one"))
	eventually(t, "one leads", c1.Leading)
	c2, _, _, _ := runCluster(t, ctx, cs, nil, le("two"))
	if got := nodesOf(c2, "vol-a"); got != "n1" {
		t.Fatalf("the follower mirrors %q, want n1", got)
	}
	if c2.Leading() || c2.Counts() != (attach.Counts{}) {
		t.Fatalf("follower: leading %v, counts %+v; want false and zero", c2.Leading(), c2.Counts())
	}
	if c1.Counts().Volumes != 1 {
		t.Fatalf("leader counts %+v", c1.Counts())
	}
	stop1() // releases the Lease
	eventually(t, "two leads", c2.Leading)
	if c2.Counts().Volumes != 1 {
		t.Fatalf("new leader counts %+v", c2.Counts())
	}
}

// TestClusterTakeoverCountsTimeouts: a replica that becomes leader counts
// a migration timeout only when it passed after the previous leader's last
// renewal of the Lease (so the previous leader could not have counted it).
func TestClusterTakeoverCountsTimeouts(t *testing.T) {
	_, ctx, cs := startCluster(t)
	o := objects{t, ctx, cs}
	for _, n := range []string{"n1", "n2"} {
		o.node(n)
	}
	o.pv("vm", true, true, map[string]string{rdscsi.ParamMigrationTimeout: "300"})
	o.va("vm", "n1", true)
	o.va("vm", "n2", true)
	later := func() time.Time { return time.Now().Add(10 * time.Minute) }
	for i, tc := range []struct {
		renewed time.Duration // the previous leader's last renewal, from now
		want    int
	}{
		{renewed: 4 * time.Minute, want: 1}, // died before the deadline (now+5m)
		{renewed: 6 * time.Minute, want: 0}, // alive at the deadline: counted it
	} {
		name := fmt.Sprintf("lease-%d", i)
		if _, err := cs.CoordinationV1().Leases(metav1.NamespaceDefault).Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("dead"), LeaseDurationSeconds: ptr.To[int32](1),
				AcquireTime: &metav1.MicroTime{Time: time.Now()}, RenewTime: &metav1.MicroTime{Time: time.Now().Add(tc.renewed)}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c, _, rec, stop := runCluster(t, ctx, cs, []attach.Option{attach.WithClock(later)},
			kube.WithLeaderElection(kube.LeaderElection{Namespace: metav1.NamespaceDefault, Name: name, Identity: "new",
				LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond}))
		if timeouts, _ := rec.get(); timeouts != 0 {
			t.Fatalf("case %d: a follower counted %d timeouts", i, timeouts)
		}
		eventually(t, "takeover", c.Leading)
		c.Counts()
		if timeouts, _ := rec.get(); timeouts != tc.want {
			t.Errorf("case %d: previous renewal at now%+v: counted %d timeouts, want %d", i, tc.renewed, timeouts, tc.want)
		}
		stop()
	}
}

// TestClusterAPIServerDown is scenario 5: with the API server stopped,
// calls are answered from the informers' cache; once it is back, changes
// made there reach the Manager.
func TestClusterAPIServerDown(t *testing.T) {
	s, ctx, cs := startCluster(t)
	o := objects{t, ctx, cs}
	for _, n := range []string{"n1", "n2"} {
		o.node(n)
	}
	o.pv("a", false, false, nil)
	o.pv("b", false, false, nil)
	o.va("a", "n1", true)
	c, _, _, _ := runCluster(t, ctx, cs, nil)

	s.StopAPIServer()
	req := attach.Request{VolumeID: "vol-a", NodeID: "n1", Mode: attach.Exclusive}
	if err := c.Attach(ctx, req); err != nil {
		t.Fatalf("publish retry while the API server is down: %v", err)
	}
	req.NodeID = "n2"
	if err := c.Attach(ctx, req); err == nil {
		t.Fatal("a second node got an RWO volume while the API server was down")
	}
	if ok, err := c.NodeExists(ctx, "n2"); !ok || err != nil {
		t.Fatalf("node lookup while the API server is down: %v, %v", ok, err)
	}
	if got := nodesOf(c, "vol-a"); got != "n1" {
		t.Fatalf("a on %q while the API server is down", got)
	}
	if err := s.StartAPIServer(); err != nil {
		t.Fatal(err)
	}

	o.va("b", "n2", true)
	o.deleteVA("a", "n1")
	eventually(t, "b attached and a detached after the restart", func() bool {
		return nodesOf(c, "vol-b") == "n2" && nodesOf(c, "vol-a") == ""
	})
	req.NodeID = "n2"
	o.va("a", "n2", false)
	if err := c.Attach(ctx, req); err != nil {
		t.Fatalf("publish after the restart: %v", err)
	}
}

// TestNewClusterRefuses: arguments client-go's leader election would
// refuse later are refused at construction.
func TestNewClusterRefuses(t *testing.T) {
	m, err := attach.NewManager(context.Background(), attach.NewMemStore())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cs := kubernetes.NewForConfigOrDie(&rest.Config{Host: "https://127.0.0.1:1"})
	le := kube.LeaderElection{Namespace: "ns", Name: "lease", Identity: "me"}
	for name, tc := range map[string]struct {
		driver string
		opts   []kube.Option
	}{
		"no driver":                     {"", nil},
		"no publish wait":               {driver, []kube.Option{kube.WithPublishWait(0)}},
		"no reconcile interval":         {driver, []kube.Option{kube.WithReconcileInterval(-time.Second)}},
		"no lease name":                 {driver, []kube.Option{kube.WithLeaderElection(kube.LeaderElection{Namespace: "ns", Identity: "me"})}},
		"renew deadline near retry":     {driver, []kube.Option{kube.WithLeaderElection(withDurations(le, 15, 6, 5))}},
		"lease not longer than renewal": {driver, []kube.Option{kube.WithLeaderElection(withDurations(le, 10, 10, 2))}},
		"negative retry period":         {driver, []kube.Option{kube.WithLeaderElection(withDurations(le, 15, 10, -1))}},
	} {
		if _, err := kube.NewCluster(cs, tc.driver, m, tc.opts...); err == nil {
			t.Errorf("%s: NewCluster succeeded", name)
		}
	}
	if _, err := kube.NewCluster(cs, driver, m, kube.WithLeaderElection(withDurations(le, 15, 10, 5))); err != nil {
		t.Errorf("the sidecars' defaults: %v", err)
	}
}

func withDurations(le kube.LeaderElection, lease, renew, retry time.Duration) kube.LeaderElection {
	le.LeaseDuration, le.RenewDeadline, le.RetryPeriod = lease*time.Second, renew*time.Second, retry*time.Second
	return le
}

// TestClusterAPIServerUnreachable: Run neither serves nor fails while the
// API server cannot be reached; within seconds it logs that it waits, and
// why.
func TestClusterAPIServerUnreachable(t *testing.T) {
	m, err := attach.NewManager(context.Background(), attach.NewMemStore())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var logs testutil.SyncBuffer
	cs := kubernetes.NewForConfigOrDie(&rest.Config{Host: "https://127.0.0.1:1", Timeout: time.Second})
	c, err := kube.NewCluster(cs, driver, m, kube.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	eventually(t, "a warning naming the cause", func() bool {
		return strings.Contains(logs.String(), "still waiting for the API server") && strings.Contains(logs.String(), "connection refused")
	})
	select {
	case <-c.Ready():
		t.Fatal("ready without an API server")
	case err := <-done:
		t.Fatalf("Run returned %v without an API server", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
