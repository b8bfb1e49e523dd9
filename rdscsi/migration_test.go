package rdscsi_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/attach"
)

// TestLiveMigration walks a KubeVirt-style live migration of a raw block
// volume: A, then B joins, C is refused, A leaves, B stays; the Manager's
// counts are checked at each step, and the outcome survives a restart of
// the attachment store.
func TestLiveMigration(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{})
	ctx := context.Background()
	rwx := ctrlTestBlockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	req := ctrlTestCreateReq("vm-disk", 64*ctrlTestMiB, rwx)
	req.Parameters = map[string]string{"migrationTimeoutSeconds": "300"}
	v := ctrlTestMust(e.cc.CreateVolume(ctx, req))(t).GetVolume()
	publish := func(node string) error {
		_, err := e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
			VolumeId: v.VolumeId, NodeId: node, VolumeCapability: rwx, VolumeContext: v.VolumeContext})
		return err
	}
	unpublish := func(node string) {
		t.Helper()
		ctrlTestMust(e.cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v.VolumeId, NodeId: node}))(t)
	}
	step := func(name string, want attach.Counts, nodes ...string) {
		t.Helper()
		if got := e.manager.Counts(); got != want {
			t.Errorf("%s: counts %+v, want %+v", name, got, want)
		}
		a, _ := e.manager.Get(v.VolumeId)
		if !slices.Equal(a.Nodes, nodes) {
			t.Errorf("%s: nodes %v, want %v", name, a.Nodes, nodes)
		}
		g := ctrlTestMust(e.cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: v.VolumeId}))(t)
		if !slices.Equal(g.Status.PublishedNodeIds, nodes) {
			t.Errorf("%s: published to %v, want %v", name, g.Status.PublishedNodeIds, nodes)
		}
	}

	if err := publish("node-a"); err != nil {
		t.Fatal(err)
	}
	step("A", attach.Counts{Volumes: 1, NodeAttachments: 1}, "node-a")

	if err := publish("node-b"); err != nil {
		t.Fatalf("migration target: %v", err)
	}
	step("A+B", attach.Counts{Volumes: 1, NodeAttachments: 2, Migrations: 1}, "node-a", "node-b")
	a, _ := e.manager.Get(v.VolumeId)
	if a.MigrationTimeout != 300*time.Second || a.MigrationStarted.IsZero() {
		t.Errorf("migration timeout %v started %v, want 5m from the StorageClass", a.MigrationTimeout, a.MigrationStarted)
	}

	err := publish("node-c")
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("third node: %v, want FailedPrecondition", err)
	}
	step("C refused", attach.Counts{Volumes: 1, NodeAttachments: 2, Migrations: 1}, "node-a", "node-b")

	// Retries of the migration's publish calls are idempotent.
	if err := publish("node-b"); err != nil {
		t.Fatal(err)
	}
	unpublish("node-a")
	step("B", attach.Counts{Volumes: 1, NodeAttachments: 1}, "node-b")
	unpublish("node-a") // idempotent
	step("B again", attach.Counts{Volumes: 1, NodeAttachments: 1}, "node-b")

	// The store is the truth: a new Manager on the same file agrees.
	e.manager.Close()
	e.store.Close()
	store, err := attach.NewFileStore(e.state)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m, err := attach.NewManager(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got, ok := m.Get(v.VolumeId); !ok || !slices.Equal(got.Nodes, []string{"node-b"}) || got.Mode != attach.Migratable {
		t.Errorf("after restart: %+v", got)
	}
	if c := m.Counts(); c != (attach.Counts{Volumes: 1, NodeAttachments: 1}) {
		t.Errorf("counts after restart: %+v", c)
	}
}

// TestConcurrentCreateSameName sends 50 CreateVolume calls for one name at
// once. The serializer aborts the ones that overlap; each caller retries
// Aborted like a CO does. Exactly one disk is created.
func TestConcurrentCreateSameName(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{})
	ctx := context.Background()
	e.rds.ResetCommands()
	const callers = 50
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ids     = map[string]int{}
		aborted int
		other   []error
	)
	start := make(chan struct{})
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for attempt := 0; attempt < 1000; attempt++ {
				r, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq("contended", 32*ctrlTestMiB))
				mu.Lock()
				switch status.Code(err) {
				case codes.OK:
					ids[r.Volume.VolumeId]++
					mu.Unlock()
					return
				case codes.Aborted:
					aborted++
					mu.Unlock()
					time.Sleep(time.Millisecond)
					continue
				default:
					other = append(other, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(other) > 0 {
		t.Fatalf("errors other than Aborted: %v", other)
	}
	if len(ids) != 1 {
		t.Fatalf("volume IDs %v", ids)
	}
	for _, n := range ids {
		if n != callers {
			t.Errorf("%d of %d callers succeeded", n, callers)
		}
	}
	if slots := e.diskSlots(t, "pvc-"); len(slots) != 1 {
		t.Errorf("disks on the RDS: %v", slots)
	}
	adds := 0
	for _, c := range e.rds.Commands() {
		if len(c) > 9 && c[:9] == "/disk add" {
			adds++
		}
	}
	// Aborted calls send nothing. Every call that got through sent one
	// add: the first created the disk, the others were refused because
	// the slot exists and judged the disk they found.
	if adds != callers {
		t.Errorf("%d /disk add commands, want one per successful call (%d)", adds, callers)
	}
	t.Logf("%d calls were aborted and retried", aborted)
}
