package rdsclient_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/srvlab/rds-csi/internal/testutil"
	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

const (
	gib = int64(1) << 30
	mib = int64(1) << 20
)

func TestCreateReadDisk(t *testing.T) {
	checkLeaks(t)
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)

	// 1.5 GiB plus one byte rounds up to 1537 MiB, never down.
	want := spec("pvc-create-1", 3*gib/2+1)
	d, err := c.CreateDisk(ctx, want)
	if err != nil {
		t.Fatalf("CreateDisk: %v", err)
	}
	// One command: a silent add is not read back.
	if cmds := srv.Commands(); len(cmds) != 1 || !strings.HasPrefix(cmds[0], "/disk add ") {
		t.Errorf("CreateDisk sent %q, want the add alone", cmds)
	}
	if d.Slot != want.Slot || d.Type != "file" || d.FilePath != want.FilePath {
		t.Errorf("CreateDisk = %+v", d)
	}
	if d.SizeBytes != 1537*mib || d.SizeBytes != rdsclient.RoundUpSize(want.SizeBytes) {
		t.Errorf("size = %d, want %d", d.SizeBytes, 1537*mib)
	}
	if d.Export == nil || d.Export.Port != 4420 || d.Export.NQN != want.Export.NQN {
		t.Errorf("export = %+v", d.Export)
	}
	if !commandSent(srv, "/disk add type=file ", "file-size=1537M") {
		t.Errorf("add not sent with a MiB size: %q", srv.Commands())
	}

	got, err := c.Disk(ctx, want.Slot)
	if err != nil {
		t.Fatalf("Disk: %v", err)
	}
	// The disk CreateDisk described from the spec is the disk the
	// device holds.
	if !reflect.DeepEqual(got, d) {
		t.Errorf("Disk = %+v, want %+v as returned by CreateDisk", got, d)
	}
	if _, err := os.Stat(mustDiskFile(t, srv, want.Slot)); err != nil {
		t.Errorf("backing file: %v", err)
	}

	// Whole GiB are sent with G, and an unexported disk has no Export.
	plain := rdsclient.DiskSpec{Slot: "pvc-create-2", FilePath: "/storage-pool/k8s/pvc-create-2.img", SizeBytes: 2 * gib}
	d2, err := c.CreateDisk(ctx, plain)
	if err != nil {
		t.Fatalf("CreateDisk unexported: %v", err)
	}
	if d2.Export != nil || d2.SizeBytes != 2*gib {
		t.Errorf("unexported disk = %+v", d2)
	}
	if got2, err := c.Disk(ctx, plain.Slot); err != nil || !reflect.DeepEqual(got2, d2) {
		t.Errorf("Disk = %+v, %v; want %+v as returned by CreateDisk", got2, err, d2)
	}
	if !commandSent(srv, "/disk add type=file ", "file-size=2G") {
		t.Errorf("2 GiB not sent as 2G: %q", srv.Commands())
	}
	if b, err := srv.BackingFile(want.Export.NQN); err != nil || b == "" {
		t.Errorf("BackingFile(%s) = %q, %v", want.Export.NQN, b, err)
	}
}

func commandSent(srv *rdstest.Server, prefix, contains string) bool {
	for _, c := range srv.Commands() {
		if strings.HasPrefix(c, prefix) && strings.Contains(c, contains) {
			return true
		}
	}
	return false
}

func mustDiskFile(t *testing.T, srv *rdstest.Server, slot string) string {
	t.Helper()
	p, err := srv.DiskFile(slot)
	if err != nil {
		t.Fatalf("DiskFile(%s): %v", slot, err)
	}
	return p
}

func TestCreateDiskExists(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	s := spec("pvc-dup", gib)
	if _, err := c.CreateDisk(ctx, s); err != nil {
		t.Fatal(err)
	}
	_, err := c.CreateDisk(ctx, s)
	if !errors.Is(err, rdsclient.ErrExists) {
		t.Fatalf("second CreateDisk = %v, want ErrExists", err)
	}
	var ce *rdsclient.CommandError
	if !errors.As(err, &ce) || !strings.HasPrefix(ce.Command, "/disk add") {
		t.Errorf("error %v is not a *CommandError for the add", err)
	}
}

func TestDiskNotFound(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	_, err := c.Disk(testCtx(t), "pvc-missing")
	if !errors.Is(err, rdsclient.ErrNotFound) {
		t.Fatalf("Disk = %v, want ErrNotFound", err)
	}
	var ce *rdsclient.CommandError
	if !errors.As(err, &ce) || ce.Class != rdsclient.ErrNotFound {
		t.Errorf("error %v: want *CommandError with class ErrNotFound", err)
	}
}

func TestDisksPrefix(t *testing.T) {
	srv := newServer(t)
	srv.AddForeignDisk(rdstest.ForeignDisk{Slot: "nvme1", Type: "nvme", SizeBytes: 512 * gib})
	srv.AddForeignDisk(rdstest.ForeignDisk{Slot: "boot-pvc-x", Type: "file", FilePath: "/storage-pool/boot.img", SizeBytes: gib, NQN: "nqn.2000-02.com.mikrotik:boot"})
	c := dial(t, srv)
	ctx := testCtx(t)
	for _, slot := range []string{"pvc-a", "pvc-b", "snap-a"} {
		if _, err := c.CreateDisk(ctx, spec(slot, gib)); err != nil {
			t.Fatal(err)
		}
	}
	disks, err := c.Disks(ctx, "pvc-")
	if err != nil {
		t.Fatal(err)
	}
	var slots []string
	for _, d := range disks {
		slots = append(slots, d.Slot)
	}
	if strings.Join(slots, ",") != "pvc-a,pvc-b" {
		t.Errorf("Disks(pvc-) = %v, want [pvc-a pvc-b] (prefix anchored, foreign disks excluded)", slots)
	}
	none, err := c.Disks(ctx, "zzz")
	if err != nil || len(none) != 0 {
		t.Errorf("Disks(zzz) = %v, %v", none, err)
	}
	// Foreign non-file disks parse too.
	all, err := c.Disks(ctx, "nvme")
	if err != nil || len(all) != 1 || all[0].Type != "nvme" || all[0].SizeBytes != 512*gib || all[0].FilePath != "" {
		t.Errorf("Disks(nvme) = %+v, %v", all, err)
	}
}

func TestResizeDisk(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	if _, err := c.CreateDisk(ctx, spec("pvc-grow", gib)); err != nil {
		t.Fatal(err)
	}
	cur := mustDisk(t, c, "pvc-grow")
	srv.ResetCommands()
	d, err := c.ResizeDisk(ctx, cur, 2*gib+1)
	if err != nil {
		t.Fatalf("ResizeDisk: %v", err)
	}
	if d.SizeBytes != 2*gib+mib {
		t.Errorf("size after resize = %d, want %d", d.SizeBytes, 2*gib+mib)
	}
	// The set and one read-back (a set on an empty [find] is silent
	// too, so only the read shows the disk grew); no read before.
	want := []string{
		`/disk set [find slot="pvc-grow"] file-size=2049M`,
		`/disk print detail where slot="pvc-grow"`,
	}
	if got := srv.Commands(); !reflect.DeepEqual(got, want) {
		t.Errorf("ResizeDisk sent %q, want %q", got, want)
	}
	if fi, err := os.Stat(mustDiskFile(t, srv, "pvc-grow")); err != nil || fi.Size() != 2*gib+mib {
		t.Errorf("backing file size = %v, %v", fi, err)
	}
	// What ResizeDisk returned is what the device now holds.
	if got := mustDisk(t, c, "pvc-grow"); !reflect.DeepEqual(got, d) {
		t.Errorf("Disk after resize = %+v, ResizeDisk returned %+v", got, d)
	}

	// Same size: d itself, and nothing is sent.
	srv.ResetCommands()
	if same, err := c.ResizeDisk(ctx, d, 2*gib+mib); err != nil || !reflect.DeepEqual(same, d) {
		t.Errorf("same-size ResizeDisk = %+v, %v; want %+v", same, err, d)
	}
	// Shrinking: ErrInvalid, and nothing is sent.
	if _, err := c.ResizeDisk(ctx, d, gib); !errors.Is(err, rdsclient.ErrInvalid) {
		t.Errorf("shrink = %v, want ErrInvalid", err)
	}
	// Only file disks are resized; a foreign one is refused unsent.
	srv.AddForeignDisk(rdstest.ForeignDisk{Slot: "nvme3", Type: "nvme", SizeBytes: gib})
	nvme := mustDisk(t, c, "nvme3")
	srv.ResetCommands()
	if _, err := c.ResizeDisk(ctx, nvme, 2*gib); !errors.Is(err, rdsclient.ErrInvalid) {
		t.Errorf("ResizeDisk(nvme3) = %v, want ErrInvalid", err)
	}
	if cmds := srv.Commands(); len(cmds) != 0 {
		t.Errorf("commands %q sent for no-op, shrink and a foreign disk", cmds)
	}
	// A caller with only a slot reads the disk first: an absent disk
	// fails there.
	if _, err := c.Disk(ctx, "pvc-none"); !errors.Is(err, rdsclient.ErrNotFound) {
		t.Errorf("Disk(pvc-none) = %v, want ErrNotFound", err)
	}
}

// TestResizeDiskGone: a disk removed since the caller read it is neither
// created by the resize nor reported grown. The set, its [find] empty,
// is silent; the read-back is what fails, with ErrNotFound.
func TestResizeDiskGone(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	if _, err := c.CreateDisk(ctx, spec("pvc-gone", gib)); err != nil {
		t.Fatal(err)
	}
	stale := mustDisk(t, c, "pvc-gone")
	file := mustDiskFile(t, srv, "pvc-gone")
	if err := c.DeleteDisk(ctx, stale); err != nil {
		t.Fatal(err)
	}
	srv.ResetCommands()
	d, err := c.ResizeDisk(ctx, stale, 2*gib)
	var ce *rdsclient.CommandError
	if !errors.Is(err, rdsclient.ErrNotFound) || !errors.As(err, &ce) || ce.Command != `/disk print detail where slot="pvc-gone"` {
		t.Errorf("ResizeDisk of a deleted disk = %v, want ErrNotFound from the read-back", err)
	}
	if !reflect.DeepEqual(d, rdsclient.Disk{}) {
		t.Errorf("ResizeDisk of a deleted disk returned %+v, want the zero Disk", d)
	}
	want := []string{
		`/disk set [find slot="pvc-gone"] file-size=2G`,
		`/disk print detail where slot="pvc-gone"`,
	}
	if got := srv.Commands(); !reflect.DeepEqual(got, want) {
		t.Errorf("ResizeDisk sent %q, want %q (the set once, not again)", got, want)
	}
	if _, err := c.Disk(ctx, "pvc-gone"); !errors.Is(err, rdsclient.ErrNotFound) {
		t.Errorf("Disk(pvc-gone) after the resize = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("backing file after the resize: %v, want none", err)
	}
}

func TestDeleteDisk(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	s := spec("pvc-del", gib)
	if _, err := c.CreateDisk(ctx, s); err != nil {
		t.Fatal(err)
	}
	file := mustDiskFile(t, srv, s.Slot)
	d := mustDisk(t, c, s.Slot)
	srv.ResetCommands()
	if err := c.DeleteDisk(ctx, d); err != nil {
		t.Fatalf("DeleteDisk: %v", err)
	}
	// Three commands: the disk's remove, the print proving it gone (a
	// silent remove is not taken on trust), and its file's remove.
	want := []string{
		`/disk remove [find slot="pvc-del"]`,
		`/disk print detail where slot="pvc-del"`,
		`/file remove [find name="storage-pool/k8s/pvc-del.img"]`,
	}
	if got := srv.Commands(); !reflect.DeepEqual(got, want) {
		t.Errorf("DeleteDisk sent %q, want %q", got, want)
	}
	if _, err := c.Disk(ctx, s.Slot); !errors.Is(err, rdsclient.ErrNotFound) {
		t.Errorf("disk still there: %v", err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("backing file still there: %v", err)
	}
	// Already gone: a stale Disk is deleted without error (both removes
	// find nothing and are silent, the print shows the disk absent), and
	// a caller that reads first is told ErrNotFound.
	srv.ResetCommands()
	if err := c.DeleteDisk(ctx, d); err != nil {
		t.Errorf("second DeleteDisk = %v", err)
	}
	if got := srv.Commands(); !reflect.DeepEqual(got, want) {
		t.Errorf("second DeleteDisk sent %q, want %q", got, want)
	}
	if err := deleteSlot(ctx, c, s.Slot); !errors.Is(err, rdsclient.ErrNotFound) {
		t.Errorf("read and delete of a gone disk = %v, want ErrNotFound from the read", err)
	}
}

func TestDeleteDiskRaces(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	if _, err := c.CreateDisk(ctx, spec("pvc-race", gib)); err != nil {
		t.Fatal(err)
	}
	// The disk vanishes between the caller's read and its DeleteDisk
	// (another caller removed it, its file too), and RouterOS answers
	// the remove with "no such item": the read-back proves it gone, so
	// that is success.
	d := mustDisk(t, c, "pvc-race")
	file := mustDiskFile(t, srv, "pvc-race")
	rawOutput(t, srv, `/disk remove [find slot="pvc-race"]`)
	rawOutput(t, srv, `/file remove [find name="storage-pool/k8s/pvc-race.img"]`)
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("the other caller's remove left the file: %v", err)
	}
	srv.ResetCommands()
	srv.Inject(rdstest.FailNth(`^/disk remove`, 1, "failure: no such item"))
	if err := c.DeleteDisk(ctx, d); err != nil {
		t.Errorf("DeleteDisk answered no such item = %v", err)
	}
	want := []string{
		`/disk remove [find slot="pvc-race"]`,
		`/disk print detail where slot="pvc-race"`,
		`/file remove [find name="storage-pool/k8s/pvc-race.img"]`,
	}
	if got := srv.Commands(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands %q, want %q", got, want)
	}

	// Disk in use: the error surfaces as ErrInUse.
	if _, err := c.CreateDisk(ctx, spec("pvc-busy", gib)); err != nil {
		t.Fatal(err)
	}
	busy := mustDisk(t, c, "pvc-busy")
	srv.ResetCommands()
	srv.Inject(rdstest.FailNth(`^/disk remove \[find slot="pvc-busy"\]`, 1, "failure: disk is in use"))
	err := c.DeleteDisk(ctx, busy)
	var ce *rdsclient.CommandError
	if !errors.Is(err, rdsclient.ErrInUse) || !errors.As(err, &ce) || ce.ExitStatus != 1 {
		t.Errorf("DeleteDisk of busy disk = %v, want ErrInUse *CommandError", err)
	}
	// A failed remove is the answer: neither read back nor followed by
	// the file's remove.
	if got, want := srv.Commands(), []string{`/disk remove [find slot="pvc-busy"]`}; !reflect.DeepEqual(got, want) {
		t.Errorf("DeleteDisk of busy disk sent %q, want %q", got, want)
	}
	if _, err := c.Disk(ctx, "pvc-busy"); err != nil {
		t.Errorf("busy disk must survive: %v", err)
	}
	if _, err := os.Stat(mustDiskFile(t, srv, "pvc-busy")); err != nil {
		t.Errorf("backing file of the busy disk must survive: %v", err)
	}
	// Foreign non-file disks are never removed.
	srv.AddForeignDisk(rdstest.ForeignDisk{Slot: "nvme2", Type: "nvme", SizeBytes: gib})
	nvme := mustDisk(t, c, "nvme2")
	srv.ResetCommands()
	if err := c.DeleteDisk(ctx, nvme); !errors.Is(err, rdsclient.ErrInvalid) {
		t.Errorf("DeleteDisk(nvme2) = %v, want ErrInvalid", err)
	}
	// A file disk whose path cannot be turned into a safe /file name
	// is refused before anything is removed.
	bad := busy
	bad.FilePath = "/storage-pool/k8s/../pvc-busy.img"
	if err := c.DeleteDisk(ctx, bad); !errors.Is(err, rdsclient.ErrUnexpectedOutput) {
		t.Errorf("DeleteDisk with path %q = %v, want ErrUnexpectedOutput", bad.FilePath, err)
	}
	if cmds := srv.Commands(); len(cmds) != 0 {
		t.Errorf("commands %q sent for a foreign disk and an unsafe path", cmds)
	}
	if _, err := c.Disk(ctx, "nvme2"); err != nil {
		t.Errorf("foreign disk must survive: %v", err)
	}
}

func TestCopyDisk(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	src, err := c.CreateDisk(ctx, spec("pvc-src", 8*mib))
	if err != nil {
		t.Fatal(err)
	}
	// Write into the sparse backing file without truncating it.
	f, err := os.OpenFile(mustDiskFile(t, srv, "pvc-src"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	snap := rdsclient.DiskSpec{Slot: "snap-1", FilePath: "/storage-pool/k8s/snap-1.img"}
	srv.ResetCommands()
	d, err := c.CopyDisk(ctx, src, snap)
	if err != nil {
		t.Fatalf("CopyDisk snapshot: %v", err)
	}
	// SizeBytes 0: the device gives the copy the source's size, which
	// the copy's read-back reports.
	if d.Slot != snap.Slot || d.Type != "file" || d.Export != nil || d.SizeBytes != 8*mib || d.FilePath != snap.FilePath {
		t.Errorf("snapshot = %+v", d)
	}
	// Two commands: the add, without a file-size, and the copy's
	// read-back; the source is not read.
	want := []string{
		`/disk add type=file copy-from=[find slot="pvc-src"] file-path="/storage-pool/k8s/snap-1.img" slot="snap-1"`,
		`/disk print detail where slot="snap-1"`,
	}
	if got := srv.Commands(); !reflect.DeepEqual(got, want) {
		t.Errorf("copy sent %q, want %q", got, want)
	}
	if got := mustDisk(t, c, "snap-1"); !reflect.DeepEqual(got, d) {
		t.Errorf("Disk(snap-1) = %+v, CopyDisk returned %+v", got, d)
	}
	b, err := os.ReadFile(mustDiskFile(t, srv, "snap-1"))
	if err != nil || !strings.HasPrefix(string(b), "hello") {
		t.Errorf("copy content = %q, %v", b, err)
	}
	// A bigger, exported restore, from the snapshot as read: with a
	// size, the add alone, its result described from the spec.
	clone := spec("pvc-clone", 16*mib)
	snapDisk := mustDisk(t, c, "snap-1")
	srv.ResetCommands()
	d, err = c.CopyDisk(ctx, snapDisk, clone)
	if err != nil || d.SizeBytes != 16*mib || d.Export == nil || d.Export.NQN != clone.Export.NQN || d.Export.Port != 4420 {
		t.Errorf("clone = %+v, %v", d, err)
	}
	if cmds := srv.Commands(); len(cmds) != 1 ||
		!strings.HasPrefix(cmds[0], `/disk add type=file copy-from=[find slot="snap-1"] `) || !strings.Contains(cmds[0], ` file-size=16M slot="pvc-clone"`) {
		t.Errorf("sized copy sent %q, want the add alone", cmds)
	}
	if got := mustDisk(t, c, "pvc-clone"); !reflect.DeepEqual(got, d) {
		t.Errorf("Disk(pvc-clone) = %+v, CopyDisk returned %+v", got, d)
	}
	// Smaller than the source: refused unsent.
	srv.ResetCommands()
	if _, err := c.CopyDisk(ctx, d, spec("pvc-y", 8*mib)); !errors.Is(err, rdsclient.ErrInvalid) {
		t.Errorf("shrinking copy = %v, want ErrInvalid", err)
	}
	if n := countCommands(srv, "/disk add"); n != 0 {
		t.Errorf("%d adds sent for a refused copy", n)
	}
	// Missing source: a caller that reads it first is told ErrNotFound;
	// a stale source, gone since it was read, fails on the device with
	// "no such item".
	if _, err := c.Disk(ctx, "pvc-nope"); !errors.Is(err, rdsclient.ErrNotFound) {
		t.Errorf("Disk(pvc-nope) = %v, want ErrNotFound", err)
	}
	gone := src
	gone.Slot = "pvc-nope"
	// With or without a size, the failed add is the answer: not read
	// back.
	for _, size := range []int64{8 * mib, 0} {
		srv.ResetCommands()
		_, err = c.CopyDisk(ctx, gone, spec("pvc-x", size))
		var ce *rdsclient.CommandError
		if !errors.Is(err, rdsclient.ErrNotFound) || !errors.As(err, &ce) || !strings.HasPrefix(ce.Command, `/disk add type=file copy-from=[find slot="pvc-nope"]`) {
			t.Errorf("copy (size %d) of missing source = %v, want ErrNotFound from the add", size, err)
		}
		if cmds := srv.Commands(); len(cmds) != 1 {
			t.Errorf("copy (size %d) of missing source sent %q, want the add alone", size, cmds)
		}
		if _, err := c.Disk(ctx, "pvc-x"); !errors.Is(err, rdsclient.ErrNotFound) {
			t.Errorf("copy of missing source created pvc-x: %v", err)
		}
	}
	// Existing target.
	if _, err := c.CopyDisk(ctx, src, snap); !errors.Is(err, rdsclient.ErrExists) {
		t.Errorf("copy onto existing slot = %v, want ErrExists", err)
	}
}

// TestCopyDiskSizeFromDevice: a copy without a size gets the source's
// size at the moment of the copy, which may differ from the size of the
// source as the caller read it; CopyDisk returns the device's size.
func TestCopyDiskSizeFromDevice(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	if _, err := c.CreateDisk(ctx, spec("pvc-grows", 8*mib)); err != nil {
		t.Fatal(err)
	}
	stale := mustDisk(t, c, "pvc-grows")
	if stale.SizeBytes != 8*mib {
		t.Fatalf("source = %+v, want 8 MiB", stale)
	}
	grown, err := c.ResizeDisk(ctx, stale, 16*mib)
	if err != nil || grown.SizeBytes != 16*mib {
		t.Fatalf("ResizeDisk = %+v, %v", grown, err)
	}
	snap := rdsclient.DiskSpec{Slot: "snap-grows", FilePath: "/storage-pool/k8s/snap-grows.img"}
	srv.ResetCommands()
	d, err := c.CopyDisk(ctx, stale, snap)
	if err != nil {
		t.Fatalf("CopyDisk: %v", err)
	}
	if d.SizeBytes != 16*mib {
		t.Errorf("copy of a source grown to 16 MiB, passed as read at 8 MiB, has %d bytes, want %d", d.SizeBytes, 16*mib)
	}
	if got := mustDisk(t, c, "snap-grows"); !reflect.DeepEqual(got, d) {
		t.Errorf("Disk(snap-grows) = %+v, CopyDisk returned %+v", got, d)
	}
	if cmds := srv.Commands(); len(cmds) != 3 || strings.Contains(cmds[0], "file-size=") ||
		!strings.HasPrefix(cmds[0], `/disk add type=file copy-from=[find slot="pvc-grows"] `) ||
		cmds[1] != `/disk print detail where slot="snap-grows"` {
		t.Errorf("commands %q, want the add without file-size, its read-back and the test's read", cmds)
	}
}

func TestNoSpace(t *testing.T) {
	srv := newServer(t, rdstest.WithPool("small", 64*mib))
	c := dial(t, srv)
	ctx := testCtx(t)
	s := rdsclient.DiskSpec{Slot: "pvc-big", FilePath: "/small/pvc-big.img", SizeBytes: gib}
	_, err := c.CreateDisk(ctx, s)
	if !errors.Is(err, rdsclient.ErrNoSpace) {
		t.Fatalf("CreateDisk in a small pool = %v, want ErrNoSpace", err)
	}
	var ce *rdsclient.CommandError
	if !errors.As(err, &ce) || ce.Class != rdsclient.ErrNoSpace {
		t.Errorf("error %v: want *CommandError", err)
	}
	if _, err := c.Disk(ctx, "pvc-big"); !errors.Is(err, rdsclient.ErrNotFound) {
		t.Errorf("disk created despite no space: %v", err)
	}
}

func TestCapacity(t *testing.T) {
	srv := newServer(t, rdstest.WithPool("storage-pool", 100*gib), rdstest.WithPool("other", 10*gib))
	c := dial(t, srv)
	ctx := testCtx(t)
	before, err := c.Capacity(ctx, "storage-pool")
	if err != nil {
		t.Fatal(err)
	}
	if before.Pool != "storage-pool" || before.TotalBytes != 100*gib || before.FreeBytes <= 0 || before.FreeBytes > before.TotalBytes {
		t.Errorf("Capacity = %+v", before)
	}
	if _, err := c.CreateDisk(ctx, spec("pvc-cap", 10*gib)); err != nil {
		t.Fatal(err)
	}
	after, err := c.Capacity(ctx, "storage-pool")
	if err != nil {
		t.Fatal(err)
	}
	if after.TotalBytes != before.TotalBytes || after.FreeBytes > before.FreeBytes {
		t.Errorf("Capacity after create = %+v, before %+v", after, before)
	}
	other, err := c.Capacity(ctx, "other")
	if err != nil || other.TotalBytes != 10*gib {
		t.Errorf("Capacity(other) = %+v, %v", other, err)
	}
	if _, err := c.Capacity(ctx, "no-such-pool"); !errors.Is(err, rdsclient.ErrNotFound) {
		t.Errorf("Capacity(no-such-pool) = %v, want ErrNotFound", err)
	}
}

func TestFilesAndRemoveFile(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv, rdsclient.WithLocation(time.Local))
	ctx := testCtx(t)
	for _, slot := range []string{"pvc-f1", "pvc-f2"} {
		if _, err := c.CreateDisk(ctx, spec(slot, 10*mib)); err != nil {
			t.Fatal(err)
		}
	}
	for _, prefix := range []string{"storage-pool/k8s", "/storage-pool/k8s"} {
		files, err := c.Files(ctx, prefix)
		if err != nil {
			t.Fatalf("Files(%s): %v", prefix, err)
		}
		byName := map[string]rdsclient.File{}
		for _, f := range files {
			if !strings.HasPrefix(f.Name, "storage-pool/k8s") {
				t.Errorf("file %q outside the prefix", f.Name)
			}
			byName[f.Name] = f
		}
		f, ok := byName["storage-pool/k8s/pvc-f1.img"]
		if !ok || f.SizeBytes != 10*mib || !strings.Contains(f.Type, "file") {
			t.Errorf("Files(%s) = %+v", prefix, files)
		}
		if f.LastModified.IsZero() || time.Since(f.LastModified) > time.Hour || time.Since(f.LastModified) < -time.Hour {
			t.Errorf("last-modified %v not recent", f.LastModified)
		}
	}
	// A disk-less (orphan) file is removed with RemoveFile, with or
	// without the leading slash; removing it again is fine.
	orphan := filepath.Join(filepath.Dir(mustDiskFile(t, srv, "pvc-f1")), "orphan.img")
	if err := os.WriteFile(orphan, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveFile(ctx, "/storage-pool/k8s/orphan.img"); err != nil {
		t.Fatalf("RemoveFile: %v", err)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("orphan still there: %v", err)
	}
	if err := c.RemoveFile(ctx, "storage-pool/k8s/orphan.img"); err != nil {
		t.Errorf("RemoveFile of missing file = %v", err)
	}
	srv.Inject(rdstest.FailNth(`^/file remove`, 1, "failure: no such item"))
	if err := c.RemoveFile(ctx, "storage-pool/k8s/orphan.img"); err != nil {
		t.Errorf("RemoveFile with no such item = %v", err)
	}
}

func TestDiskStats(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	if _, err := c.CreateDisk(ctx, spec("pvc-io", gib)); err != nil {
		t.Fatal(err)
	}
	srv.SetTraffic("pvc-io", rdstest.Traffic{ReadOps: 243401, ReadBytes: 33131503616, WriteOps: 17667231,
		WriteBytes: 515659673600, InFlightOps: 3, ReadRateBits: 0, WriteRateBits: 12_800_000})
	st, err := c.DiskStats(ctx, "pvc-io")
	if err != nil {
		t.Fatalf("DiskStats: %v", err)
	}
	want := rdsclient.DiskStats{Slot: "pvc-io", ReadOps: 243401, ReadBytes: 33131503616, WriteOps: 17667231,
		WriteBytes: 515659673600, InFlightOps: 3, WriteRateBits: 12_800_000}
	st.ReadTime, st.WriteTime = 0, 0
	if st != want {
		t.Errorf("DiskStats = %+v\nwant %+v", st, want)
	}
	if _, err := c.DiskStats(ctx, "pvc-none"); !errors.Is(err, rdsclient.ErrNotFound) {
		t.Errorf("DiskStats of missing disk = %v, want ErrNotFound", err)
	}
}

func TestPingIdentity(t *testing.T) {
	srv := newServer(t, rdstest.WithIdentity("rds-lab"))
	c := dial(t, srv)
	ctx := testCtx(t)
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	name, err := c.Identity(ctx)
	if err != nil || name != "rds-lab" {
		t.Errorf("Identity = %q, %v", name, err)
	}
	if n := countCommands(srv, "/system identity print"); n != 2 {
		t.Errorf("%d identity prints, want 2", n)
	}
}

func TestWrappedOutput(t *testing.T) {
	// The console wraps long values in the middle; parsing still yields
	// exact values.
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	s := spec("pvc-0123456789abcdef0123456789abcdef-wrapped", 5*gib+3*mib)
	s.FilePath = "/storage-pool/k8s/some/deeper/directory/" + s.Slot + ".img"
	if _, err := c.CreateDisk(ctx, s); err != nil {
		t.Fatal(err)
	}
	d, err := c.Disk(ctx, s.Slot)
	if err != nil {
		t.Fatal(err)
	}
	if d.FilePath != s.FilePath || d.SizeBytes != 5*gib+3*mib || d.Export.NQN != s.Export.NQN {
		t.Errorf("wrapped disk = %+v", d)
	}
}

// TestConsoleWidths reads every kind of detail listing back at console
// widths from 46 (where the longest key still fits a line) to 100, each
// set by the login's <n>w flag, which the client reads too. The device
// breaks lines at spaces, so at most widths digit groups (size, free) and
// timestamps are broken inside the value, and paths and NQNs are cut.
func TestConsoleWidths(t *testing.T) {
	srv := newServer(t, rdstest.WithPool("storage-pool", 7949127950336))
	ctx := testCtx(t)
	s := spec("pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f", 50*gib)
	s.FilePath = "/storage-pool/k8s/some/deeper/directory/" + s.Slot + ".img"
	first := dial(t, srv)
	if _, err := first.CreateDisk(ctx, s); err != nil {
		t.Fatal(err)
	}
	want, err := first.Disk(ctx, s.Slot)
	if err != nil {
		t.Fatal(err)
	}
	wantCap, err := first.Capacity(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if want.SizeBytes != 50*gib || want.FilePath != s.FilePath || wantCap.TotalBytes != 7949127950336 {
		t.Fatalf("at the default width: %+v, %+v", want, wantCap)
	}
	for width := 46; width <= 100; width++ {
		cfg := srv.ClientConfig()
		cfg.User = fmt.Sprintf("admin+ct%dw", width)
		c, err := rdsclient.Dial(ctx, srv.Addr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if d, err := c.Disk(ctx, s.Slot); err != nil || !reflect.DeepEqual(d, want) {
			t.Errorf("width %d: Disk = %+v, %v; want %+v", width, d, err, want)
		}
		if ds, err := c.Disks(ctx, "pvc-"); err != nil || len(ds) != 1 || !reflect.DeepEqual(ds[0], want) {
			t.Errorf("width %d: Disks = %+v, %v", width, ds, err)
		}
		if got, err := c.Capacity(ctx, pool); err != nil || got != wantCap {
			t.Errorf("width %d: Capacity = %+v, %v; want %+v", width, got, err, wantCap)
		}
		files, err := c.Files(ctx, "storage-pool/k8s/some")
		if err != nil || len(files) != 4 || files[3].Name != strings.TrimPrefix(s.FilePath, "/") ||
			files[3].Type != ".img file" || files[3].SizeBytes != 50*gib || files[3].LastModified.IsZero() {
			t.Errorf("width %d: Files = %+v, %v", width, files, err)
		}
		c.Close()
	}
}

func TestErrorClasses(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	cls, err := c.CreateDisk(ctx, spec("pvc-cls", gib))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		output string
		want   error
	}{
		{"not found", "failure: no such item", rdsclient.ErrNotFound},
		{"exists", "failure: item with this name already exists", rdsclient.ErrExists},
		{"no space", "failure: not enough space", rdsclient.ErrNoSpace},
		{"syntax", "expected end of command (line 1 column 30)", rdsclient.ErrInvalid},
		{"bad command", "bad command name nvme-tcp-server-nqn (line 1 column 12)", rdsclient.ErrInvalid},
		{"bad value", "invalid value for argument file-size", rdsclient.ErrInvalid},
		{"in use", "failure: disk is in use", rdsclient.ErrInUse},
		{"unknown failure", "failure: something new", rdsclient.ErrUnexpectedOutput},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			remove := srv.Inject(rdstest.FailNth(`^/disk set`, 1, tc.output))
			defer remove()
			_, err := c.ResizeDisk(ctx, cls, 4*gib)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var ce *rdsclient.CommandError
			if !errors.As(err, &ce) {
				t.Fatalf("err %v is not a *CommandError", err)
			}
			if ce.ExitStatus != 1 || !strings.Contains(ce.Stdout, tc.output) || !strings.HasPrefix(ce.Command, "/disk set ") {
				t.Errorf("CommandError = %+v", ce)
			}
			for _, other := range []error{rdsclient.ErrNotFound, rdsclient.ErrExists, rdsclient.ErrNoSpace,
				rdsclient.ErrInvalid, rdsclient.ErrInUse, rdsclient.ErrUnavailable, rdsclient.ErrUnexpectedOutput, rdsclient.ErrClosed} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("err also matches %v", other)
				}
			}
		})
	}

	t.Run("unparseable output", func(t *testing.T) {
		// A disk entry without size= cannot be trusted.
		remove := srv.Inject(rdstest.AnswerNth(`^/disk print`, 1, ` 0  type=file slot="pvc-cls" file-path=/storage-pool/x.img`, 0))
		defer remove()
		_, err := c.Disk(ctx, "pvc-cls")
		if !errors.Is(err, rdsclient.ErrUnexpectedOutput) {
			t.Fatalf("err = %v, want ErrUnexpectedOutput", err)
		}
	})
	t.Run("unavailable", func(t *testing.T) {
		c2 := dial(t, srv)
		srv.RefuseConnections(true)
		defer srv.RefuseConnections(false)
		srv.DropConnections()
		_, err := c2.Disk(ctx, "pvc-cls")
		if !errors.Is(err, rdsclient.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		c3 := dial(t, srv)
		c3.Close()
		if _, err := c3.Disk(ctx, "pvc-cls"); !errors.Is(err, rdsclient.ErrClosed) {
			t.Fatalf("err = %v, want ErrClosed", err)
		}
	})
}

func TestCommandLog(t *testing.T) {
	// Commands are logged at debug level; check the exact wire format
	// of every command once.
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	s := spec("pvc-wire", gib)
	var d rdsclient.Disk
	steps := []func() error{
		func() error { _, err := c.CreateDisk(ctx, s); return err },
		func() error { _, err := c.Disks(ctx, "pvc-"); return err },
		func() (err error) { d, err = c.Disk(ctx, s.Slot); return err },
		func() (err error) { d, err = c.ResizeDisk(ctx, d, 2*gib); return err },
		func() error { _, err := c.Capacity(ctx, pool); return err },
		func() error { _, err := c.Files(ctx, "/storage-pool/k8s"); return err },
		func() error { _, err := c.DiskStats(ctx, s.Slot); return err },
		func() error { return c.DeleteDisk(ctx, d) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	want := []string{
		`/disk add type=file file-path="/storage-pool/k8s/pvc-wire.img" file-size=1G slot="pvc-wire" nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:pvc-wire"`,
		`/disk print detail where slot~"^pvc-"`,
		`/disk print detail where slot="pvc-wire"`,
		`/disk set [find slot="pvc-wire"] file-size=2G`,
		`/disk print detail where slot="pvc-wire"`,
		`/disk print detail where mount-point="storage-pool"`,
		`/file print detail where name~"^storage-pool/k8s"`,
		`/disk monitor-traffic "pvc-wire" once`,
		`/disk remove [find slot="pvc-wire"]`,
		`/disk print detail where slot="pvc-wire"`,
		`/file remove [find name="storage-pool/k8s/pvc-wire.img"]`,
	}
	got := srv.Commands()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestObserver(t *testing.T) {
	srv := newServer(t)
	obs := newObserver()
	c := dial(t, srv, rdsclient.WithObserver(obs))
	ctx := testCtx(t)
	if _, err := c.Disk(ctx, "pvc-none"); !errors.Is(err, rdsclient.ErrNotFound) {
		t.Fatal(err)
	}
	srv.Inject(rdstest.FailNth(`^/disk set`, 1, "failure: no such item"))
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if n := obs.commandCount("disk print ok"); n != 1 {
		t.Errorf("disk print ok = %d (%v)", n, obs.commands)
	}
	if n := obs.commandCount("system identity print ok"); n != 1 {
		t.Errorf("system identity print ok = %d (%v)", n, obs.commands)
	}
	if got := obs.stateLog(); len(got) != 1 || !got[0] {
		t.Errorf("connection states = %v, want [true]", got)
	}
	c.Close() // waits for the connection's watcher, which reports "down"
	if got := obs.stateLog(); len(got) != 2 || got[1] {
		t.Errorf("connection states after Close = %v, want [true false]", got)
	}
}

func TestLogger(t *testing.T) {
	srv := newServer(t)
	var buf testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := dial(t, srv, rdsclient.WithLogger(log))
	if _, err := c.Disk(testCtx(t), "pvc-logged"); !errors.Is(err, rdsclient.ErrNotFound) {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, `command="/disk print detail where slot=\"pvc-logged\""`) || !strings.Contains(out, "status=ok") {
		t.Errorf("debug log lacks the command:\n%s", out)
	}
	if strings.Contains(out, "PRIVATE KEY") {
		t.Errorf("key material in the log:\n%s", out)
	}
}

// rawOutput runs line over a plain SSH session and returns its stdout.
func rawOutput(t *testing.T, srv *rdstest.Server, line string) string {
	t.Helper()
	cfg := srv.ClientConfig()
	sc, err := ssh.Dial("tcp", srv.Addr(), &ssh.ClientConfig{User: cfg.User, Auth: cfg.Auth, HostKeyCallback: cfg.HostKeyCallback, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sess, err := sc.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Output(line)
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return string(out)
}
