package rdscsi_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"

	"github.com/srvlab/rds-csi/metrics"
	"github.com/srvlab/rds-csi/rdscsi"
)

// nodeTestStuckMounter is a mount.Interface whose Mount or Unmount (the
// gated ones) blocks until released, as a mount or umount does on a dead
// device, and then does the real thing.
type nodeTestStuckMounter struct {
	mount.Interface
	stuckMount, stuckUnmount bool
	entered                  chan string   // "mount <path>" or "unmount <path>" when a gated call blocks
	release                  chan struct{} // closed: gated calls go on
	releaseOnce              sync.Once
}

func nodeTestNewStuckMounter(t *testing.T, stuckMount, stuckUnmount bool) *nodeTestStuckMounter {
	m := &nodeTestStuckMounter{
		Interface: mount.New(""), stuckMount: stuckMount, stuckUnmount: stuckUnmount,
		entered: make(chan string, 16), release: make(chan struct{}),
	}
	// Registered early so that it runs late: never leave a call blocked.
	t.Cleanup(m.free)
	return m
}

func (m *nodeTestStuckMounter) free() { m.releaseOnce.Do(func() { close(m.release) }) }

func (m *nodeTestStuckMounter) Mount(source, target, fsType string, options []string) error {
	if m.stuckMount {
		m.entered <- "mount " + target
		<-m.release
	}
	return m.Interface.Mount(source, target, fsType, options)
}

func (m *nodeTestStuckMounter) Unmount(target string) error {
	if m.stuckUnmount {
		m.entered <- "unmount " + target
		<-m.release
	}
	return m.Interface.Unmount(target)
}

// nodeTestForceMounter adds a force unmount that unmounts at once (or,
// with stuckForce, blocks like the plain one), and counts its calls.
type nodeTestForceMounter struct {
	*nodeTestStuckMounter
	stuckForce bool
	forced     atomic.Int32
}

var _ mount.MounterForceUnmounter = (*nodeTestForceMounter)(nil)

func (m *nodeTestForceMounter) UnmountWithForce(target string, _ time.Duration) error {
	m.forced.Add(1)
	if m.stuckForce {
		m.entered <- "force " + target
		<-m.release
	}
	return unix.Unmount(target, 0)
}

// nodeTestOps passes on every mount operation the node reports, so that a
// test can wait for an abandoned one to end.
type nodeTestOps struct {
	metrics.Noop
	ops chan string // "<op>:<status>"
}

func nodeTestNewOps() *nodeTestOps { return &nodeTestOps{ops: make(chan string, 64)} }

func (o *nodeTestOps) MountOperation(_ context.Context, op, status string, _ time.Duration) {
	o.ops <- op + ":" + status
}

// waitFor waits until an operation whose report starts with prefix
// ends; the bound only turns a hang into a failure.
func (o *nodeTestOps) waitFor(t *testing.T, prefix string) {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case op := <-o.ops:
			if strings.HasPrefix(op, prefix) {
				return
			}
		case <-timeout:
			t.Fatalf("no %s operation ended", prefix)
		}
	}
}

// nodeTestAwait returns the result of a call running in the background;
// the bound only turns a call that ignores its ctx into a failure.
func nodeTestAwait(t *testing.T, errc <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(time.Minute):
		t.Fatalf("%s did not return after its ctx ended", what)
		return nil
	}
}

// nodeTestTmpfs mounts a tmpfs at a new directory below dir, standing in
// for a published volume.
func nodeTestTmpfs(t *testing.T, dir string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	p := filepath.Join(dir, "target")
	if err := os.Mkdir(p, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", p, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nodeTestUnmountUnder(t, dir) })
	return p
}

func nodeTestIsMounted(t *testing.T, p string) bool {
	t.Helper()
	return nodeTestMountCount(t, p) > 0
}

// An unmount that hangs (a dead device) no longer holds the RPC: it
// returns when its ctx ends, the volume stays busy until the abandoned
// unmount returns, and then the next call goes ahead. No goroutine is
// left once the kernel (here, the fake) lets go.
func TestNodeUnmountHangReturnsWithCtx(t *testing.T) {
	ctrlTestCheckLeaks(t)
	dir := t.TempDir()
	target := nodeTestTmpfs(t, dir)
	m := nodeTestNewStuckMounter(t, false, true)
	ops := nodeTestNewOps()
	ns, err := rdscsi.NewNodeServer("node-1", &nodeTestFakeConnector{}, rdscsi.WithStateDir(t.TempDir()),
		rdscsi.WithMounter(m), rdscsi.WithRecorder(ops))
	if err != nil {
		t.Fatal(err)
	}
	id := nodeTestVolumeID(t)
	req := &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { _, err := ns.NodeUnpublishVolume(ctx, req); errc <- err }()
	if got := <-m.entered; got != "unmount "+target {
		t.Fatalf("blocked in %q", got)
	}
	cancel()
	nodeTestCode(t, nodeTestAwait(t, errc, "NodeUnpublishVolume"), codes.Canceled)

	// The umount is still in the kernel: the volume stays busy. (Without
	// that, these calls would block in a second umount, until bctx ends.)
	bctx, bcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer bcancel()
	_, err = ns.NodeUnpublishVolume(bctx, req)
	nodeTestCode(t, err, codes.Aborted)
	_, err = ns.NodeStageVolume(bctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: filepath.Join(dir, "staging"),
		VolumeCapability: nodeTestMountCap("", nodeTestSNW), VolumeContext: nodeTestContext(id)})
	nodeTestCode(t, err, codes.Aborted)

	// The kernel lets go: the abandoned unmount ends and frees the volume.
	m.free()
	ops.waitFor(t, "unmount:")
	if nodeTestIsMounted(t, target) {
		t.Fatal("the abandoned unmount did not unmount")
	}
	if _, err := ns.NodeUnpublishVolume(context.Background(), req); err != nil {
		t.Fatalf("unpublish after the unmount ended: %v", err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("target path left: %v", err)
	}
}

// When a plain unmount does not return within half the time the call has
// left, the node falls back to the mounter's force unmount.
func TestNodeUnmountFallsBackToForce(t *testing.T) {
	ctrlTestCheckLeaks(t)
	for _, tc := range []struct {
		name       string
		stuckForce bool
		want       codes.Code
	}{
		{"force unmounts", false, codes.OK},
		{"force hangs too", true, codes.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			target := nodeTestTmpfs(t, dir)
			m := &nodeTestForceMounter{nodeTestStuckMounter: nodeTestNewStuckMounter(t, false, true), stuckForce: tc.stuckForce}
			ops := nodeTestNewOps()
			ns, err := rdscsi.NewNodeServer("node-1", &nodeTestFakeConnector{}, rdscsi.WithStateDir(t.TempDir()),
				rdscsi.WithMounter(m), rdscsi.WithRecorder(ops))
			if err != nil {
				t.Fatal(err)
			}
			req := &csi.NodeUnpublishVolumeRequest{VolumeId: nodeTestVolumeID(t), TargetPath: target}

			// The plain unmount blocks until released; the force one
			// starts once half of the 4s is gone.
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
			defer cancel()
			errc := make(chan error, 1)
			go func() { _, err := ns.NodeUnpublishVolume(ctx, req); errc <- err }()
			err = nodeTestAwait(t, errc, "NodeUnpublishVolume")
			nodeTestCode(t, err, tc.want)
			if n := m.forced.Load(); n != 1 {
				t.Fatalf("%d force unmounts, want 1", n)
			}
			if tc.want == codes.OK && nodeTestIsMounted(t, target) {
				t.Fatal("unpublish succeeded but the target is still mounted")
			}

			// The plain unmount (and the stuck force) are still running.
			bctx, bcancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer bcancel()
			_, err = ns.NodeUnpublishVolume(bctx, req)
			nodeTestCode(t, err, codes.Aborted)

			// Both unmounts report when they end: the force one may have
			// already, before the call returned.
			m.free()
			ops.waitFor(t, "unmount:")
			ops.waitFor(t, "unmount:")
			if _, err := ns.NodeUnpublishVolume(context.Background(), req); err != nil {
				t.Fatalf("unpublish after the unmounts ended: %v", err)
			}
			if nodeTestIsMounted(t, target) {
				t.Fatal("target still mounted")
			}
		})
	}
}

// A stage whose mount hangs returns with its ctx; the mount, once the
// kernel lets go, is found by the next stage, which succeeds.
func TestNodeStageMountHangReturnsWithCtx(t *testing.T) {
	ctrlTestCheckLeaks(t)
	m := nodeTestNewStuckMounter(t, true, false)
	ops := nodeTestNewOps()
	e := nodeTestSetup(t, rdscsi.WithMounter(m), rdscsi.WithRecorder(ops))
	id := e.createDisk(64 << 20)
	vc := nodeTestMountCap("ext4", nodeTestSNW)
	staging := filepath.Join(e.dir, "staging")
	req := &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: vc, VolumeContext: nodeTestContext(id)}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { _, err := e.ns.NodeStageVolume(ctx, req); errc <- err }()
	if got := <-m.entered; got != "mount "+staging {
		t.Fatalf("blocked in %q", got)
	}
	cancel()
	nodeTestCode(t, nodeTestAwait(t, errc, "NodeStageVolume"), codes.Canceled)
	bctx, bcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer bcancel()
	_, err := e.ns.NodeUnstageVolume(bctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
	nodeTestCode(t, err, codes.Aborted)

	m.free()
	ops.waitFor(t, "mount:ok")
	if _, err := e.ns.NodeStageVolume(context.Background(), req); err != nil {
		t.Fatalf("stage after the abandoned mount ended: %v", err)
	}
	if n := nodeTestMountCount(t, staging); n != 1 {
		t.Fatalf("%d mounts at the staging path, want 1", n)
	}
	e.must(e.unstage(e.ns, id, staging))
	if _, err := os.Stat(staging); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("staging directory left: %v", err)
	}
}

// nodeTestStuckExec runs "sleep 600" in place of one command while
// stuck is set, and reports when it starts.
type nodeTestStuckExec struct {
	utilexec.Interface
	cmd     string
	stuck   atomic.Bool
	entered chan struct{}
}

func (e *nodeTestStuckExec) Command(cmd string, args ...string) utilexec.Cmd {
	return e.CommandContext(context.Background(), cmd, args...)
}

func (e *nodeTestStuckExec) CommandContext(ctx context.Context, cmd string, args ...string) utilexec.Cmd {
	if cmd == e.cmd && e.stuck.Load() {
		e.entered <- struct{}{}
		return e.Interface.CommandContext(ctx, "sleep", "600")
	}
	return e.Interface.CommandContext(ctx, cmd, args...)
}

// The resize tools run under the call's ctx: a hanging resize2fs is
// killed when the call's ctx ends, and the volume is free again.
func TestNodeExpandKillsHangingResize(t *testing.T) {
	ctrlTestCheckLeaks(t)
	ops := nodeTestNewOps()
	stuck := &nodeTestStuckExec{Interface: utilexec.New(), cmd: "resize2fs", entered: make(chan struct{}, 4)}
	stuck.stuck.Store(true)
	e := nodeTestSetup(t, rdscsi.WithExec(stuck), rdscsi.WithRecorder(ops))
	id := e.createDisk(64 << 20)
	staging := filepath.Join(e.dir, "staging")
	e.must(e.stage(e.ns, id, staging, nodeTestMountCap("ext4", nodeTestSNW)))
	req := &csi.NodeExpandVolumeRequest{VolumeId: id, VolumePath: staging}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { _, err := e.ns.NodeExpandVolume(ctx, req); errc <- err }()
	<-stuck.entered
	cancel()
	nodeTestCode(t, nodeTestAwait(t, errc, "NodeExpandVolume"), codes.Canceled)

	// Killed with its ctx, the resize ends without help.
	ops.waitFor(t, "resize:error")
	stuck.stuck.Store(false)
	if _, err := e.ns.NodeExpandVolume(context.Background(), req); err != nil {
		t.Fatalf("expand after the killed resize: %v", err)
	}
	e.must(e.unstage(e.ns, id, staging))
}

// A file system that left the mount table but still holds its device (a
// lazy unmount with a file open, as a forced or stuck umount leaves it)
// keeps NodeUnstageVolume from disconnecting the device under it.
func TestNodeUnstageRefusesDeviceHeldByDetachedFileSystem(t *testing.T) {
	e := nodeTestSetup(t, rdscsi.WithDeviceReleaseTimeout(0))
	ctx := context.Background()
	id := e.createDisk(64 << 20)
	staging := filepath.Join(e.dir, "staging")
	e.must(e.stage(e.ns, id, staging, nodeTestMountCap("ext4", nodeTestSNW)))
	f, err := os.Create(filepath.Join(staging, "open"))
	e.must(err)
	defer f.Close()
	e.must(unix.Unmount(staging, unix.MNT_DETACH))
	if nodeTestIsMounted(t, staging) {
		t.Fatal("still in the mount table after a lazy unmount")
	}

	err = e.unstage(e.ns, id, staging)
	nodeTestCode(t, err, codes.FailedPrecondition)
	if _, err := e.loop.Device(ctx, rdscsi.NQN(id)); err != nil {
		t.Fatalf("device was disconnected under a live file system: %v", err)
	}

	// The last file closes, the file system shuts down: unstage goes on.
	e.must(f.Close())
	e.must(e.unstage(e.ns, id, staging))
}
