package rdscsi_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/internal/testutil"
	"github.com/srvlab/rds-csi/metrics"
	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdscsi"
)

func TestLoggingStripsSecrets(t *testing.T) {
	var buf testutil.SyncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newCtrlTestEnv(t, ctrlTestConfig{logger: logger})
	ctx := context.Background()
	const secret = "hunter2-s3cr3t"
	secrets := map[string]string{"password": secret, "token": secret + "-2"}

	req := ctrlTestCreateReq("secret-vol", 0)
	req.Secrets = secrets
	v := ctrlTestMust(e.cc.CreateVolume(ctx, req))(t).GetVolume()
	// A failing call logs its request too.
	_, err := e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: v.VolumeId, Secrets: secrets})
	ctrlTestCode(t, err, codes.InvalidArgument)
	ctrlTestMust(e.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "secret-snap", SourceVolumeId: v.VolumeId, Secrets: secrets}))(t)

	out := buf.String()
	if strings.Contains(out, secret) {
		t.Fatalf("secret in log:\n%s", out)
	}
	for _, want := range []string{rdscsi.StrippedSecret, `\"password\"`, "CreateVolume", "ControllerPublishVolume", "CreateSnapshot", "secret-vol", `"code":"InvalidArgument"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

func TestSanitizedJSON(t *testing.T) {
	req := &csi.NodeStageVolumeRequest{
		VolumeId:          "pvc-1",
		StagingTargetPath: "/staging",
		Secrets:           map[string]string{"chap": "p4ss"},
		VolumeContext:     map[string]string{"nqn": "nqn.x"},
	}
	out := rdscsi.SanitizedJSON(req)
	if strings.Contains(out, "p4ss") || !strings.Contains(out, rdscsi.StrippedSecret) || !strings.Contains(out, "nqn.x") || !strings.Contains(out, "/staging") {
		t.Errorf("sanitized: %s", out)
	}
	if req.Secrets["chap"] != "p4ss" {
		t.Error("the request itself was changed")
	}
	// Every secret-bearing request of the spec is covered: the field
	// option, not a list of names, decides.
	for _, m := range []interface {
		GetSecrets() map[string]string
	}{
		&csi.DeleteVolumeRequest{Secrets: map[string]string{"k": "p4ss"}},
		&csi.ControllerExpandVolumeRequest{Secrets: map[string]string{"k": "p4ss"}},
		&csi.NodePublishVolumeRequest{Secrets: map[string]string{"k": "p4ss"}},
		&csi.ListSnapshotsRequest{Secrets: map[string]string{"k": "p4ss"}},
		&csi.GetSnapshotRequest{Secrets: map[string]string{"k": "p4ss"}},
		&csi.ControllerModifyVolumeRequest{Secrets: map[string]string{"k": "p4ss"}},
	} {
		if out := rdscsi.SanitizedJSON(m); strings.Contains(out, "p4ss") {
			t.Errorf("%T: %s", m, out)
		}
	}
	if out := rdscsi.SanitizedJSON(&csi.ListVolumesRequest{MaxEntries: 3}); !strings.Contains(out, "3") {
		t.Errorf("plain message: %s", out)
	}
	if out := rdscsi.SanitizedJSON("not a message"); out != "" {
		t.Errorf("non-message: %q", out)
	}
}

// ctrlTestRecorder records RPC reports.
type ctrlTestRecorder struct {
	metrics.Noop
	mu        sync.Mutex
	calls     []string // "method code"
	conflicts int
}

func (r *ctrlTestRecorder) RPC(_ context.Context, method, code string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, method+" "+code)
}

func (r *ctrlTestRecorder) AttachmentConflict(context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conflicts++
}

func (r *ctrlTestRecorder) conflictCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conflicts
}

func (r *ctrlTestRecorder) has(call string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.calls {
		if c == call {
			return true
		}
	}
	return false
}

func TestMetricsInterceptor(t *testing.T) {
	rec := &ctrlTestRecorder{}
	e := newCtrlTestEnv(t, ctrlTestConfig{recorder: rec})
	ctx := context.Background()
	ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("metrics", 0)))(t)
	e.cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: "fake-vol-id"})
	e.ic.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	for _, want := range []string{"CreateVolume OK", "ControllerGetVolume NotFound", "GetPluginInfo OK"} {
		if !rec.has(want) {
			t.Errorf("no %q in %v", want, rec.calls)
		}
	}
}

// ctrlTestBlockingDisks blocks Disk lookups of one slot until released.
type ctrlTestBlockingDisks struct {
	ctrlTestDisks
	slot    string
	entered chan struct{}
	release chan struct{}
}

func (b *ctrlTestBlockingDisks) Disk(ctx context.Context, slot string) (rdsclient.Disk, error) {
	if slot == b.slot {
		select {
		case b.entered <- struct{}{}:
		default:
		}
		<-b.release
	}
	return b.ctrlTestDisks.Disk(ctx, slot)
}

func TestSerializeInterceptorAbortsConcurrentCalls(t *testing.T) {
	blockedName := "blocked"
	blockedID := rdscsi.VolumeIDForName(blockedName)
	bd := &ctrlTestBlockingDisks{slot: blockedID, entered: make(chan struct{}, 1), release: make(chan struct{})}
	rec := &ctrlTestRecorder{}
	e := newCtrlTestEnv(t, ctrlTestConfig{recorder: rec, wrap: func(d rdscsi.Disks) rdscsi.Disks {
		bd.ctrlTestDisks = d
		return bd
	}})
	ctx := context.Background()

	done := make(chan error, 1)
	go func() {
		_, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq(blockedName, 0))
		done <- err
	}()
	<-bd.entered // the first call is inside the backend now
	if !e.locks.Held(blockedID) {
		t.Fatal("volume not locked while its CreateVolume runs")
	}

	_, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq(blockedName, 0))
	ctrlTestCode(t, err, codes.Aborted)
	_, err = e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: blockedID})
	ctrlTestCode(t, err, codes.Aborted)
	_, err = e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: blockedID, NodeId: "n", VolumeCapability: ctrlTestRWO})
	ctrlTestCode(t, err, codes.Aborted)
	_, err = e.cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: blockedID, CapacityRange: &csi.CapacityRange{RequiredBytes: 1}})
	ctrlTestCode(t, err, codes.Aborted)
	_, err = e.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-of-blocked", SourceVolumeId: blockedID})
	ctrlTestCode(t, err, codes.Aborted)
	// Other volumes and listings go on.
	ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("free", 0)))(t)
	ctrlTestMust(e.cc.ListVolumes(ctx, &csi.ListVolumesRequest{}))(t)

	close(bd.release)
	if err := <-done; err != nil {
		t.Fatalf("blocked call: %v", err)
	}
	if n := e.locks.Len(); n != 0 {
		t.Errorf("%d locks still held", n)
	}
	ctrlTestMust(e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: blockedID}))(t)
	if !rec.has("CreateVolume Aborted") {
		t.Errorf("aborted calls not counted: %v", rec.calls)
	}
}

func TestSerializeKeys(t *testing.T) {
	intercept, locks := rdscsi.SerializeInterceptor()
	call := func(method string, req any) error {
		_, err := intercept(context.Background(), req, &grpc.UnaryServerInfo{FullMethod: method},
			func(context.Context, any) (any, error) { return "ok", nil })
		return err
	}
	vol := rdscsi.VolumeIDForName("k")
	snap := rdscsi.SnapshotIDForName("s")
	for _, tc := range []struct {
		held   string
		method string
		req    any
		abort  bool
	}{
		{vol, "/csi.v1.Controller/CreateVolume", &csi.CreateVolumeRequest{Name: "k"}, true},
		{vol, "/csi.v1.Node/NodeStageVolume", &csi.NodeStageVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Node/NodeUnstageVolume", &csi.NodeUnstageVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Node/NodePublishVolume", &csi.NodePublishVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Node/NodeExpandVolume", &csi.NodeExpandVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Node/NodeGetVolumeStats", &csi.NodeGetVolumeStatsRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Node/NodeUnpublishVolume", &csi.NodeUnpublishVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Node/NodeGetVolumeHealth", &csi.NodeGetVolumeHealthRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Controller/DeleteVolume", &csi.DeleteVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Controller/ControllerPublishVolume", &csi.ControllerPublishVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Controller/ControllerUnpublishVolume", &csi.ControllerUnpublishVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Controller/ControllerExpandVolume", &csi.ControllerExpandVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Controller/ValidateVolumeCapabilities", &csi.ValidateVolumeCapabilitiesRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Controller/ControllerGetVolumeHealth", &csi.ControllerGetVolumeHealthRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Controller/CreateVolume", &csi.CreateVolumeRequest{Name: "clone", VolumeContentSource: &csi.VolumeContentSource{
			Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: vol}}}}, true},
		{snap, "/csi.v1.Controller/CreateVolume", &csi.CreateVolumeRequest{Name: "restore", VolumeContentSource: &csi.VolumeContentSource{
			Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap}}}}, true},
		{vol, "/csi.v1.Controller/ControllerGetVolume", &csi.ControllerGetVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Controller/CreateSnapshot", &csi.CreateSnapshotRequest{Name: "other", SourceVolumeId: vol}, true},
		{snap, "/csi.v1.Controller/CreateSnapshot", &csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: "pvc-other"}, true},
		{snap, "/csi.v1.Controller/DeleteSnapshot", &csi.DeleteSnapshotRequest{SnapshotId: snap}, true},
		{snap, "/csi.v1.Controller/GetSnapshot", &csi.GetSnapshotRequest{SnapshotId: snap}, true},
		{vol, "/csi.v1.Controller/ListVolumes", &csi.ListVolumesRequest{}, false},
		{vol, "/csi.v1.Controller/ListSnapshots", &csi.ListSnapshotsRequest{SourceVolumeId: vol}, false},
		{vol, "/csi.v1.Controller/CreateVolume", &csi.CreateVolumeRequest{Name: "other"}, false},
		{vol, "/csi.v1.Identity/Probe", &csi.ProbeRequest{}, false},
	} {
		unlock, ok := locks.TryLock(tc.held)
		if !ok {
			t.Fatal("lock busy")
		}
		err := call(tc.method, tc.req)
		if aborted := status.Code(err) == codes.Aborted; aborted != tc.abort {
			t.Errorf("%s %T with %s held: err %v, want aborted=%v", tc.method, tc.req, tc.held, err, tc.abort)
		}
		unlock()
		if err := call(tc.method, tc.req); err != nil {
			t.Errorf("%s after unlock: %v", tc.method, err)
		}
	}
	if locks.Len() != 0 {
		t.Errorf("%d locks left", locks.Len())
	}
	// The handler's own error passes through untouched.
	_, err := intercept(context.Background(), &csi.DeleteVolumeRequest{VolumeId: vol}, &grpc.UnaryServerInfo{FullMethod: "/x/DeleteVolume"},
		func(context.Context, any) (any, error) { return nil, errors.New("boom") })
	if err == nil || err.Error() != "boom" {
		t.Errorf("handler error: %v", err)
	}
}

func TestVolumeLocksAllOrNothing(t *testing.T) {
	l := rdscsi.NewVolumeLocks()
	unlockB, _ := l.TryLock("b")
	if _, ok := l.TryLock("a", "b"); ok {
		t.Fatal("took a and b while b was held")
	}
	if l.Held("a") {
		t.Fatal("a half-taken")
	}
	unlockB()
	unlock, ok := l.TryLock("a", "b")
	if !ok || !l.Held("a") || !l.Held("b") {
		t.Fatal("could not take a and b")
	}
	unlock()
	if l.Len() != 0 {
		t.Fatal("not released")
	}
}
