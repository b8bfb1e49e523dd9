package rdscsi_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

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
	b.block(slot)
	return b.ctrlTestDisks.Disk(ctx, slot)
}

func (b *ctrlTestBlockingDisks) CreateDisk(ctx context.Context, spec rdsclient.DiskSpec) (rdsclient.Disk, error) {
	b.block(spec.Slot)
	return b.ctrlTestDisks.CreateDisk(ctx, spec)
}

// block holds a call on slot until release is closed.
func (b *ctrlTestBlockingDisks) block(slot string) {
	if slot == b.slot {
		select {
		case b.entered <- struct{}{}:
		default:
		}
		<-b.release
	}
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
	ctrlTestMust(e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: blockedID}))(t)
	if !rec.has("CreateVolume Aborted") {
		t.Errorf("aborted calls not counted: %v", rec.calls)
	}
}
