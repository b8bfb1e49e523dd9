package rdstest_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

const addCmd = "/disk add type=file file-path=/storage-pool/k8s/%s.img file-size=%s slot=%s"

func addDisk(slot, size string) string {
	return strings.NewReplacer("%s.img", slot+".img", "file-size=%s", "file-size="+size, "slot=%s", "slot="+slot).Replace(addCmd)
}

func exportArgs(slot string) string {
	return " nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:" + slot
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestDiskLifecycle(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	if out := ok(t, c, addDisk("pvc-1", "10G")+exportArgs("pvc-1")); out != "" {
		t.Fatalf("add printed %q, want silence", out)
	}
	host, err := s.DiskFile("pvc-1")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(s.DataDir(), "storage-pool", "k8s", "pvc-1.img"); host != want {
		t.Fatalf("DiskFile = %q, want %q", host, want)
	}
	if b, err := s.BackingFile("nqn.2000-02.com.mikrotik:pvc-1"); err != nil || b != host {
		t.Fatalf("BackingFile = %q, %v", b, err)
	}
	if _, err := s.BackingFile("nqn.2000-02.com.mikrotik:nope"); err == nil {
		t.Fatal("BackingFile of an unknown NQN succeeded")
	}
	// Sparse: exact apparent size, (almost) no blocks.
	if got := fileSize(t, host); got != 10<<30 {
		t.Fatalf("size %d, want %d", got, int64(10<<30))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(host, &st); err == nil && st.Blocks*512 > 1<<20 {
		t.Errorf("backing file not sparse: %d blocks", st.Blocks)
	}
	terse := ok(t, c, "/disk print terse where slot=pvc-1")
	want := " 0   type=file slot=pvc-1 slot-default=\"\" parent=\"\" fs=- model=/storage-pool/k8s/pvc-1.img size=10 737 418 240 " +
		"mount-filesystem=yes mount-read-only=no compress=no sector-size=512 raid-master=none nvme-tcp-export=yes " +
		"nvme-tcp-server-port=4420 nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:pvc-1 nvme-tcp-server-allow-host-name=\"\" " +
		"iscsi-export=no nfs-sharing=no smb-sharing=no media-sharing=no media-interface=none swap=no " +
		"file-path=/storage-pool/k8s/pvc-1.img file-size=10.0GiB file-offset=0\r\n"
	if terse != want {
		t.Fatalf("terse:\n%q\nwant\n%q", terse, want)
	}

	// Grow, then refuse to shrink.
	ok(t, c, "/disk set [find slot=pvc-1] file-size=20G")
	if got := fileSize(t, host); got != 20<<30 {
		t.Fatalf("after grow: %d", got)
	}
	fails(t, c, "/disk set [find slot=pvc-1] file-size=1G", "failure: cannot shrink file")
	ok(t, c, "/disk set [find slot=pvc-1] file-size=20G") // same size: no-op
	ok(t, c, "/disk set [find slot=nope] file-size=30G")  // empty find: no-op
	fails(t, c, "/disk set nope file-size=30G", "failure: no such item")
	if out := ok(t, c, "/disk print detail where slot=pvc-1"); !strings.Contains(out, "size=21 474 836 480 ") || !strings.Contains(out, "file-size=20.0GiB") {
		t.Fatalf("after grow:\n%s", out)
	}

	// The file is in use while the disk exists.
	fails(t, c, `/file remove [find name="storage-pool/k8s/pvc-1.img"]`, "failure: file is in use")
	// Removing the disk keeps the file.
	ok(t, c, "/disk remove [find slot=pvc-1]")
	if out := ok(t, c, "/disk print detail where slot=pvc-1"); out != "Flags: X - disabled; B - blocked\r\n" {
		t.Fatalf("after remove: %q", out)
	}
	if _, err := os.Stat(host); err != nil {
		t.Fatalf("disk remove deleted the file: %v", err)
	}
	ok(t, c, "/disk remove [find slot=pvc-1]") // empty find: silent no-op
	fails(t, c, "/disk remove pvc-1", "failure: no such item")
	ok(t, c, `/file remove [find name="storage-pool/k8s/pvc-1.img"]`)
	if _, err := os.Stat(host); !os.IsNotExist(err) {
		t.Fatalf("file remove kept the file: %v", err)
	}
	ok(t, c, `/file remove [find name="storage-pool/k8s/pvc-1.img"]`) // no-op
	fails(t, c, `/file remove storage-pool/k8s/pvc-1.img`, "failure: no such item")
	// The NQN is free again once the disk is gone.
	ok(t, c, addDisk("pvc-2", "1G")+exportArgs("pvc-1"))

	// Export settings can be changed with set.
	ok(t, c, "/disk set pvc-2 nvme-tcp-export=no")
	if out := ok(t, c, "/disk print detail where slot=pvc-2"); !strings.Contains(out, "nvme-tcp-export=no") || strings.Contains(out, "nqn") {
		t.Fatalf("after unexport:\n%s", out)
	}
	if _, err := s.BackingFile("nqn.2000-02.com.mikrotik:pvc-1"); err == nil {
		t.Fatal("unexported disk still found by NQN")
	}
	ok(t, c, addDisk("pvc-3", "1G")+exportArgs("pvc-3"))
	fails(t, c, "/disk set [find slot=pvc-2] nvme-tcp-export=yes nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:pvc-3", "failure: nqn already in use")
	ok(t, c, "/disk set [find slot=pvc-2] nvme-tcp-export=yes nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:pvc-2")
	if p, err := s.BackingFile("nqn.2000-02.com.mikrotik:pvc-2"); err != nil || !strings.HasSuffix(p, "pvc-2.img") {
		t.Fatalf("re-exported: %q %v", p, err)
	}
	fails(t, c, "/disk set [find slot=pvc-2] colour=red", "expected end of command (line 1 column 29)")
	fails(t, c, "/disk set file-size=2G", "invalid value for argument numbers")
}

func TestDiskAddErrors(t *testing.T) {
	s := newServer(t, rdstest.WithPool("storage-pool", 10<<30), rdstest.WithPool("other", 1<<30))
	c := dial(t, s, "")
	ok(t, c, addDisk("pvc-1", "1G")+exportArgs("pvc-1"))
	for _, tc := range []struct{ cmd, want string }{
		{addDisk("pvc-1", "1G"), "failure: item with this name already exists"},
		{"/disk add type=file file-path=/storage-pool/k8s/pvc-1.img file-size=1G slot=pvc-9", "failure: file already exists"},
		{addDisk("pvc-3", "1G") + exportArgs("pvc-1"), "failure: nqn already in use"},
		{addDisk("pvc-3", "10G"), "failure: not enough space"},
		{"/disk add type=file file-path=/nopool/x.img file-size=1G slot=x", "failure: invalid file path"},
		{"/disk add type=file file-path=storage-pool/x.img file-size=1G slot=x", "failure: invalid file path"},
		{"/disk add type=file file-path=/storage-pool/../other/x.img file-size=1G slot=x", "failure: invalid file path"},
		{"/disk add type=file file-path=/storage-pool file-size=1G slot=x", "failure: invalid file path"},
		{"/disk add type=file file-path=/storage-pool/./x.img file-size=1G slot=x", "failure: invalid file path"},
		{`/disk add type=file file-path="/storage-pool/a b.img" file-size=1G slot=x`, "failure: invalid file path"},
		{"/disk add type=file file-path=/storage-pool/x.img slot=x", "failure: file-size not specified"},
		{"/disk add file-path=/storage-pool/x.img file-size=1G slot=x", "failure: type not specified"},
		{"/disk add type=file file-size=1G slot=x", "failure: file-path not specified"},
		{"/disk add type=nvme file-path=/storage-pool/x.img file-size=1G slot=x", "input does not match any value of type"},
		{"/disk add type=file file-path=/storage-pool/x.img file-size=1.5G slot=x", "invalid value for argument file-size"},
		{"/disk add type=file file-path=/storage-pool/x.img file-size=0 slot=x", "invalid value for argument file-size"},
		{"/disk add type=file file-path=/storage-pool/x.img file-size=1G slot=x nvme-tcp-export=maybe", "invalid value for argument nvme-tcp-export"},
		{"/disk add type=file file-path=/storage-pool/x.img file-size=1G slot=x nvme-tcp-server-port=70000", "invalid value for argument nvme-tcp-server-port"},
		{"/disk add type=file file-path=/storage-pool/x.img file-size=1G slot=x nvme-tcp-server-nqn=bad", "invalid value for argument nvme-tcp-server-nqn"},
		{"/disk add type=file file-path=/storage-pool/x.img file-size=1G slot=x colour=red", "expected end of command (line 1 column 71)"},
		{"/disk add type=file file-path=/storage-pool/x.img file-size=1G slot=x extra", "expected end of command (line 1 column 71)"},
		{"/disk add slot=x type=file copy-from=[find slot=nope] file-path=/storage-pool/x.img", "failure: no such item"},
		{"/disk add slot=x type=file copy-from=nope file-path=/storage-pool/x.img", "failure: no such item"},
		{"/disk add slot=x type=file copy-from=[find slot=pvc-1] file-path=/storage-pool/x.img file-size=512M", "invalid value for argument file-size"},
		{"/disk add slot=x type=file copy-from=[find slot=storage-pool] file-path=/storage-pool/x.img", "failure: not a file disk"},
		{"/disk remove [find slot=storage-pool]", "failure: not a file disk"},
		{"/disk set [find slot=storage-pool] file-size=1T", "failure: not a file disk"},
		{"/disk remove", "invalid value for argument numbers"},
		{"/disk print detail extra", "expected end of command (line 1 column 20)"},
		{"/disk print proplist=slot", "expected end of command (line 1 column 13)"},
		{"/disk monitor-traffic nope once", "failure: no such item"},
		{"/dsk print", "bad command name dsk (line 1 column 2)"},
		{"/disk print; /disk remove [find]", "expected end of command (line 1 column 12)"},
		{"/disk add slot=$x", "syntax error (line 1 column 16)"},
		{"/system identity print extra", "expected end of command (line 1 column 24)"},
		{"/file remove [find name=storage-pool]", "failure: cannot remove mount point"},
	} {
		fails(t, c, tc.cmd, tc.want)
	}
	// Nothing was created by the failed commands.
	out := ok(t, c, "/disk print terse")
	if n := strings.Count(out, "\r\n"); n != 3 { // two pools and pvc-1
		t.Fatalf("disks after failures:\n%s", out)
	}
	entries, err := os.ReadDir(filepath.Join(s.DataDir(), "storage-pool"))
	if err != nil || len(entries) != 1 {
		t.Fatalf("files after failures: %v %v", entries, err)
	}
}

func TestPoolFull(t *testing.T) {
	s := newServer(t, rdstest.WithPool("storage-pool", 3<<30))
	c := dial(t, s, "")
	ok(t, c, addDisk("a", "2G"))
	fails(t, c, addDisk("b", "2G"), "failure: not enough space")
	if _, err := os.Stat(filepath.Join(s.DataDir(), "storage-pool", "k8s", "b.img")); !os.IsNotExist(err) {
		t.Fatalf("failed add left a file: %v", err)
	}
	ok(t, c, addDisk("b", "1G")) // exactly full
	out := ok(t, c, `/disk print terse where mount-point="storage-pool"`)
	if !strings.Contains(out, "size=3 221 225 472 free=0 use=100%") {
		t.Fatalf("pool: %q", out)
	}
	fails(t, c, "/disk set [find slot=a] file-size=3G", "failure: not enough space")
	if got := fileSize(t, filepath.Join(s.DataDir(), "storage-pool", "k8s", "a.img")); got != 2<<30 {
		t.Fatalf("failed grow changed the size to %d", got)
	}
	fails(t, c, "/disk add type=file copy-from=[find slot=b] file-path=/storage-pool/k8s/c.img slot=c", "failure: not enough space")
	// A removed disk's file still takes space until /file remove.
	ok(t, c, "/disk remove [find slot=b]")
	fails(t, c, addDisk("d", "1G"), "failure: not enough space")
	ok(t, c, `/file remove [find name="storage-pool/k8s/b.img"]`)
	ok(t, c, addDisk("d", "1G"))
	// The space kept between prints follows growth and removal too.
	ok(t, c, "/disk remove [find slot=d]")
	ok(t, c, `/file remove [find name="storage-pool/k8s/d.img"]`)
	ok(t, c, "/disk set [find slot=a] file-size=2560M")
	fails(t, c, addDisk("e", "1G"), "failure: not enough space")
	ok(t, c, addDisk("e", "512M")) // exactly full again
	fails(t, c, addDisk("f", "1M"), "failure: not enough space")
	out = ok(t, c, `/disk print terse where mount-point="storage-pool"`)
	if !strings.Contains(out, "free=0 use=100%") {
		t.Fatalf("pool: %q", out)
	}
}

func TestCopyFrom(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	ok(t, c, addDisk("pvc-src", "64M"))
	src, _ := s.DiskFile("pvc-src")
	f, err := os.OpenFile(src, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	marks := map[int64]string{0: "head", 5<<20 + 17: "middle", 64<<20 - 4: "tail"}
	for off, text := range marks {
		if _, err := f.WriteAt([]byte(text), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	// Snapshot: same size, not exported.
	ok(t, c, "/disk add type=file copy-from=[find slot=pvc-src] file-path=/storage-pool/k8s/snap-1.img slot=snap-1")
	// Restore: bigger and exported.
	ok(t, c, "/disk add type=file copy-from=[find slot=snap-1] file-path=/storage-pool/k8s/pvc-new.img file-size=128M slot=pvc-new"+exportArgs("pvc-new"))
	want, _ := os.ReadFile(src)
	for slot, size := range map[string]int64{"snap-1": 64 << 20, "pvc-new": 128 << 20} {
		p, err := s.DiskFile(slot)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(got)) != size || !bytes.Equal(got[:len(want)], want) || !allZero(got[len(want):]) {
			t.Errorf("%s: copy differs (len %d)", slot, len(got))
		}
	}
	// Copies are independent of their source.
	if err := os.WriteFile(src, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, _ := s.DiskFile("snap-1")
	if got, _ := os.ReadFile(p); string(got[:4]) != "head" {
		t.Error("copy follows its source")
	}
	// Copies stay thin: only the source's data blocks were written.
	for _, slot := range []string{"snap-1", "pvc-new"} {
		p, _ := s.DiskFile(slot)
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err == nil && st.Blocks*512 > 4<<20 {
			t.Errorf("%s: copy allocated %d bytes", slot, st.Blocks*512)
		}
	}
	out := ok(t, c, "/disk print detail where slot=snap-1")
	if !strings.Contains(out, "nvme-tcp-export=no\r\n") || strings.Contains(out, "nqn") || strings.Contains(out, "pvc-src") {
		t.Errorf("snapshot print:\n%s", out)
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestFilePrint(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	ok(t, c, addDisk("pvc-1", "1G"))
	out := ok(t, c, `/file print terse where name~"^storage-pool/k8s"`)
	lines := strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], " 0   name=storage-pool/k8s type=directory last-modified=") ||
		!strings.HasPrefix(lines[1], ` 1   name=storage-pool/k8s/pvc-1.img type=".img file" size=1024.0MiB last-modified=`) {
		t.Fatalf("file print terse:\n%s", out)
	}
	if out := ok(t, c, `/file print detail where name="nope"`); out != "" {
		t.Fatalf("miss printed %q", out)
	}
	ok(t, c, "/disk remove [find slot=pvc-1]")
	fails(t, c, `/file remove [find name="storage-pool/k8s"]`, "failure: directory is not empty")
	ok(t, c, `/file remove [find name="storage-pool/k8s/pvc-1.img"]`)
	ok(t, c, `/file remove [find name="storage-pool/k8s"]`)
	if out := ok(t, c, "/file print detail"); strings.Contains(out, "k8s") {
		t.Fatalf("after remove:\n%s", out)
	}
}

func TestForeignDisk(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	s.AddForeignDisk(rdstest.ForeignDisk{Slot: "nvme1", Type: "nvme", SizeBytes: 960 << 30, NQN: "nqn.2000-02.com.mikrotik:host-boot"})
	s.AddForeignDisk(rdstest.ForeignDisk{Slot: "boot-2", Type: "file", FilePath: "/storage-pool/boot/host2.img", SizeBytes: 8 << 30, NQN: "nqn.2000-02.com.mikrotik:boot-2"})
	out := ok(t, c, `/disk print terse where slot~"^(nvme1|boot-2)\$"`)
	if !strings.Contains(out, " 0   type=nvme slot=nvme1 ") || !strings.Contains(out, "size=1 030 792 151 040") ||
		!strings.Contains(out, " 1   type=file slot=boot-2 ") || !strings.Contains(out, "file-size=8.0GiB") {
		t.Fatalf("foreign disks:\n%s", out)
	}
	if p, err := s.BackingFile("nqn.2000-02.com.mikrotik:boot-2"); err != nil || fileSize(t, p) != 8<<30 {
		t.Fatalf("foreign backing file: %q %v", p, err)
	}
	fails(t, c, "/disk remove nvme1", "failure: not a file disk")
	fails(t, c, addDisk("x", "1G")+" nvme-tcp-export=yes nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:host-boot", "failure: nqn already in use")
}

func TestMonitorTraffic(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	ok(t, c, addDisk("pvc-1", "1G"))
	s.SetTraffic("pvc-1", rdstest.Traffic{ReadOps: 1234, ReadBytes: 5 << 30, WriteOps: 7, WriteBytes: 4096, InFlightOps: 3, ReadRateBits: 1_500_000_000, WriteRateBits: 999,
		ReadMerges: 98765, WriteMerges: 12, DiscardOps: 1_000_000, DiscardMerges: 5, DiscardBytes: 3 << 30, FlushOps: 4321})
	out := ok(t, c, "/disk monitor-traffic pvc-1 once")
	// Keys right-aligned past the longest key, values right-aligned to the
	// longest value (5 368 709 120) plus one.
	for _, kv := range [][2]string{
		{"slot", "pvc-1"}, {"read-ops", "1 234"}, {"read-bytes", "5 368 709 120"}, {"read-rate", "1.5Gbps"},
		{"write-rate", "999bps"}, {"in-flight-ops", "3"}, {"write-time", "0ms"},
		{"read-merges", "98 765"}, {"write-merges", "12"}, {"discard-ops", "1 000 000"}, {"discard-merges", "5"},
		{"discard-bytes", "3 221 225 472"}, {"discard-time", "0ms"}, {"flush-ops", "4 321"}, {"flush-time", "0ms"},
	} {
		if want := fmt.Sprintf("\r\n%22s:%14s\r\n", kv[0], kv[1]); !strings.Contains("\r\n"+out, want) {
			t.Errorf("monitor lacks %q:\n%s", want, out)
		}
	}
	if out := ok(t, c, "/disk monitor-traffic [find slot=pvc-1] once"); !strings.Contains(out, "slot:         pvc-1") {
		t.Errorf("monitor by find:\n%s", out)
	}
}
