package rdscsitest_test

import (
	"context"
	"errors"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
	"github.com/srvlab/rds-csi/rdscsi"
	"github.com/srvlab/rds-csi/rdscsi/nvme"
	"github.com/srvlab/rds-csi/rdscsi/rdscsitest"
)

func loopTestRequire(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("loop devices need /dev/loop-control")
	}
	if _, err := osexec.LookPath("losetup"); err != nil {
		t.Fatal("losetup is missing (util-linux)")
	}
}

// loopTestSetup starts a fake with one exported disk and a connector.
func loopTestSetup(t *testing.T) (*rdstest.Server, *rdsclient.Client, *rdscsitest.LoopConnector, string) {
	t.Helper()
	loopTestRequire(t)
	srv, err := rdstest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	client, err := rdsclient.Dial(context.Background(), srv.Addr(), srv.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	conn := rdscsitest.NewLoopConnector(srv)
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	id := rdscsi.VolumeIDForName(t.Name())
	if _, err := client.CreateDisk(context.Background(), rdsclient.DiskSpec{
		Slot: id, FilePath: "/" + rdstest.DefaultPool + "/k8s/" + id + ".img", SizeBytes: 8 << 20,
		Export: &rdsclient.NVMeExport{NQN: rdscsi.NQN(id)},
	}); err != nil {
		t.Fatal(err)
	}
	return srv, client, conn, id
}

// deleteDisk deletes the disk in slot id as a caller that knows only the
// slot does: it reads the disk, then deletes the disk it read.
func deleteDisk(ctx context.Context, client *rdsclient.Client, id string) error {
	d, err := client.Disk(ctx, id)
	if err != nil {
		return err
	}
	return client.DeleteDisk(ctx, d)
}

func loopTestSize(t *testing.T, dev string) int64 {
	t.Helper()
	out, err := osexec.Command("blockdev", "--getsize64", dev).Output()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, c := range strings.TrimSpace(string(out)) {
		n = n*10 + int64(c-'0')
	}
	return n
}

func TestLoopConnector(t *testing.T) {
	srv, client, conn, id := loopTestSetup(t)
	ctx := context.Background()
	nqn := rdscsi.NQN(id)
	target := nvme.Target{Address: "127.0.0.1", Port: 4420, NQN: nqn}

	if _, err := conn.Device(ctx, nqn); !errors.Is(err, nvme.ErrNotConnected) {
		t.Fatalf("Device before Connect: %v", err)
	}
	dev, err := conn.Connect(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	again, err := conn.Connect(ctx, target)
	if err != nil || again != dev {
		t.Fatalf("second Connect = %q, %v; want %q", again, err, dev)
	}
	// One connector is one host, however often it connects.
	if n := srv.Initiators(nqn); n != 1 {
		t.Fatalf("Initiators after two Connects = %d, want 1", n)
	}
	if err := deleteDisk(ctx, client, id); !errors.Is(err, rdsclient.ErrInUse) {
		t.Fatalf("DeleteDisk of a connected disk = %v, want ErrInUse", err)
	}
	got, err := conn.Device(ctx, nqn)
	if err != nil || got != dev {
		t.Fatalf("Device = %q, %v; want %q", got, err, dev)
	}
	// The device is the fake's backing file.
	file, err := srv.BackingFile(nqn)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(dev), "loop", "backing_file"))
	if err != nil || strings.TrimSpace(string(b)) != file {
		t.Fatalf("%s backs %q (%v), want %s", dev, b, err, file)
	}

	// Growth on the RDS shows after Rescan.
	if size := loopTestSize(t, dev); size != 8<<20 {
		t.Fatalf("size %d", size)
	}
	d, err := client.Disk(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if d, err = client.ResizeDisk(ctx, d, 24<<20); err != nil || d.SizeBytes != 24<<20 {
		t.Fatalf("ResizeDisk = %+v, %v", d, err)
	}
	if err := conn.Rescan(ctx, nqn); err != nil {
		t.Fatal(err)
	}
	if size := loopTestSize(t, dev); size != 24<<20 {
		t.Fatalf("size after rescan %d", size)
	}

	// Detached behind the connector's back: Device resolves afresh.
	if out, err := osexec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
		t.Fatalf("losetup -d: %v %s", err, out)
	}
	if _, err := conn.Device(ctx, nqn); !errors.Is(err, nvme.ErrNotConnected) {
		t.Fatalf("Device after an outside detach: %v", err)
	}
	if _, err := conn.Connect(ctx, target); err != nil {
		t.Fatal(err)
	}
	if n := srv.Initiators(nqn); n != 1 {
		t.Fatalf("Initiators after reconnect = %d, want 1", n)
	}
	if err := conn.Disconnect(ctx, nqn); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Device(ctx, nqn); !errors.Is(err, nvme.ErrNotConnected) {
		t.Fatalf("Device after Disconnect: %v", err)
	}
	if n := srv.Initiators(nqn); n != 0 {
		t.Fatalf("Initiators after Disconnect = %d, want 0", n)
	}
	if err := conn.Disconnect(ctx, nqn); err != nil {
		t.Fatalf("second Disconnect: %v", err)
	}
	if err := deleteDisk(ctx, client, id); err != nil {
		t.Fatalf("DeleteDisk after Disconnect: %v", err)
	}
}

// Disconnect drops the initiator only once the loop device is really
// gone; a device held open (as by a mount) keeps the disk in use.
func TestLoopConnectorBusyDeviceStaysInUse(t *testing.T) {
	srv, client, conn, id := loopTestSetup(t)
	ctx := context.Background()
	nqn := rdscsi.NQN(id)
	dev, err := conn.Connect(ctx, nvme.Target{Address: "127.0.0.1", Port: 4420, NQN: nqn})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := conn.Disconnect(short, nqn); err == nil {
		t.Fatalf("Disconnect of an open %s succeeded", dev)
	}
	if n := srv.Initiators(nqn); n != 1 {
		t.Fatalf("Initiators after a failed Disconnect = %d, want 1", n)
	}
	if err := deleteDisk(ctx, client, id); !errors.Is(err, rdsclient.ErrInUse) {
		t.Fatalf("DeleteDisk while the device is open = %v, want ErrInUse", err)
	}
	f.Close()
	if err := conn.Disconnect(ctx, nqn); err != nil {
		t.Fatalf("Disconnect after close: %v", err)
	}
	if n := srv.Initiators(nqn); n != 0 {
		t.Fatalf("Initiators after Disconnect = %d, want 0", n)
	}
	if err := deleteDisk(ctx, client, id); err != nil {
		t.Fatal(err)
	}
}

// Two connectors are two hosts; Close releases what a connector holds.
func TestLoopConnectorCloseReleasesInitiators(t *testing.T) {
	srv, client, conn, id := loopTestSetup(t)
	ctx := context.Background()
	nqn := rdscsi.NQN(id)
	target := nvme.Target{Address: "127.0.0.1", Port: 4420, NQN: nqn}
	other := rdscsitest.NewLoopConnector(srv)
	t.Cleanup(func() { other.Close() })
	if _, err := conn.Connect(ctx, target); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Connect(ctx, target); err != nil {
		t.Fatal(err)
	}
	if n := srv.Initiators(nqn); n != 2 {
		t.Fatalf("Initiators with two connectors = %d, want 2", n)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if n := srv.Initiators(nqn); n != 1 {
		t.Fatalf("Initiators after one Close = %d, want 1", n)
	}
	if err := deleteDisk(ctx, client, id); !errors.Is(err, rdsclient.ErrInUse) {
		t.Fatalf("DeleteDisk with one host left = %v, want ErrInUse", err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	if n := srv.Initiators(nqn); n != 0 {
		t.Fatalf("Initiators after both Close = %d, want 0", n)
	}
	// A Connect whose attach fails leaves no mark: the backing file is
	// removed behind the fake's back, so losetup cannot attach it.
	file, err := srv.BackingFile(nqn)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Connect(ctx, target); err == nil {
		t.Fatal("Connect without a backing file succeeded")
	}
	if n := srv.Initiators(nqn); n != 0 {
		t.Fatalf("Initiators after a failed Connect = %d", n)
	}
	if err := deleteDisk(ctx, client, id); err != nil {
		t.Fatal(err)
	}
}

func TestLoopConnectorRefusesForeignNQN(t *testing.T) {
	srv, _, conn, _ := loopTestSetup(t)
	ctx := context.Background()
	const boot = "nqn.2014-08.org.nvmexpress:boot"
	srv.AddForeignDisk(rdstest.ForeignDisk{Slot: "boot", Type: "file", FilePath: "/" + rdstest.DefaultPool + "/boot.img", SizeBytes: 4 << 20, NQN: boot})
	if _, err := conn.Connect(ctx, nvme.Target{Address: "127.0.0.1", Port: 4420, NQN: boot}); !errors.Is(err, nvme.ErrForeign) || rdscsi.Code(err) != codes.InvalidArgument {
		t.Fatalf("Connect(boot) = %v", err)
	}
	if err := conn.Disconnect(ctx, boot); !errors.Is(err, nvme.ErrForeign) || rdscsi.Code(err) != codes.InvalidArgument {
		t.Fatalf("Disconnect(boot) = %v", err)
	}
	if n := srv.Initiators(boot); n != 0 {
		t.Fatalf("Initiators(boot) = %d", n)
	}
	if _, err := conn.Connect(ctx, nvme.Target{Address: "127.0.0.1", Port: 4420, NQN: rdscsi.NQN("pvc-missing")}); err == nil {
		t.Fatal("Connect of a disk the fake does not export succeeded")
	}
}

func TestLoopConnectorCloseDetachesDeletedDisks(t *testing.T) {
	srv, _, conn, id := loopTestSetup(t)
	ctx := context.Background()
	nqn := rdscsi.NQN(id)
	dev, err := conn.Connect(ctx, nvme.Target{Address: "127.0.0.1", Port: 4420, NQN: nqn})
	if err != nil {
		t.Fatal(err)
	}
	file, err := srv.BackingFile(nqn)
	if err != nil {
		t.Fatal(err)
	}
	// A connected disk cannot be removed, but the whole fake can go: its
	// temporary data directory, backing file included, is removed while
	// the loop device still holds the file.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("backing file still there: %v", err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(dev), "loop", "backing_file"))
	if err == nil && strings.Contains(string(b), file) {
		t.Fatalf("%s still attached to %s after Close", dev, b)
	}
}
