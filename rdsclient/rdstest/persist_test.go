package rdstest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

// startOn starts a Server on dir; the caller closes it.
func startOn(t *testing.T, dir string) *rdstest.Server {
	t.Helper()
	s, err := rdstest.NewServer(rdstest.WithDataDir(dir))
	if err != nil {
		t.Fatalf("NewServer on %s: %v", dir, err)
	}
	return s
}

func TestDisksSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	a := startOn(t, dir)
	c := dial(t, a, "")
	ok(t, c, addDisk("pvc-1", "1G")+exportArgs("pvc-1"))
	ok(t, c, addDisk("pvc-2", "3M"))
	ok(t, c, `/disk set [find slot="pvc-2"] file-size=5M nvme-tcp-export=yes nvme-tcp-server-port=4421`)
	ok(t, c, `/disk add type=file copy-from=[find slot=pvc-1] file-path=/storage-pool/k8s/snap-1.img slot=snap-1`)
	ok(t, c, addDisk("pvc-gone", "2M"))
	ok(t, c, `/disk remove [find slot="pvc-gone"]`)
	a.AddForeignDisk(rdstest.ForeignDisk{Slot: "nvme1", Type: "nvme", SizeBytes: 7 << 30})
	a.AddForeignDisk(rdstest.ForeignDisk{Slot: "boot-host1", FilePath: "/storage-pool/boot/host1.img", SizeBytes: 8 << 20, NQN: "nqn.2000-02.com.mikrotik:boot-host1"})
	disks := ok(t, c, "/disk print detail")
	files := ok(t, c, "/file print detail")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(files, "rdstest") {
		t.Errorf("/file print shows the state file:\n%s", files)
	}

	b := startOn(t, dir)
	defer b.Close()
	cb := dial(t, b, "")
	if got := ok(t, cb, "/disk print detail"); got != disks {
		t.Errorf("disks after restart:\n%s\nwant:\n%s", got, disks)
	}
	if got := ok(t, cb, "/file print detail"); got != files {
		t.Errorf("files after restart:\n%s\nwant:\n%s", got, files)
	}
	for _, slot := range []string{"pvc-1", "pvc-2", "snap-1", "boot-host1"} {
		if _, err := b.DiskFile(slot); err != nil {
			t.Errorf("DiskFile(%s) after restart: %v", slot, err)
		}
	}
	if _, err := b.BackingFile("nqn.2000-02.com.mikrotik:pvc-1"); err != nil {
		t.Errorf("BackingFile after restart: %v", err)
	}
	// The restored table is live: slots and NQNs stay taken, changes
	// persist again.
	fails(t, cb, addDisk("pvc-1", "1G"), "failure: item with this name already exists")
	ok(t, cb, `/disk remove [find slot="snap-1"]`)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	d := startOn(t, dir)
	defer d.Close()
	if out := ok(t, dial(t, d, ""), `/disk print detail where slot="snap-1"`); strings.Contains(out, "snap-1") {
		t.Errorf("removed disk came back:\n%s", out)
	}
}

func TestRestartWithMissingBackingFile(t *testing.T) {
	dir := t.TempDir()
	a := startOn(t, dir)
	c := dial(t, a, "")
	ok(t, c, addDisk("pvc-lost", "4M")+exportArgs("pvc-lost"))
	host, err := a.DiskFile("pvc-lost")
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	if err := os.Remove(host); err != nil {
		t.Fatal(err)
	}
	b := startOn(t, dir)
	defer b.Close()
	cb := dial(t, b, "")
	out := ok(t, cb, `/disk print detail where slot="pvc-lost"`)
	if !strings.Contains(out, `slot="pvc-lost"`) || !strings.Contains(out, "size=4 194 304") {
		t.Errorf("disk without its file prints:\n%s", out)
	}
	ok(t, cb, `/disk remove [find slot="pvc-lost"]`)
	if out := ok(t, cb, `/disk print detail where slot="pvc-lost"`); strings.Contains(out, "pvc-lost") {
		t.Errorf("disk not removed:\n%s", out)
	}
}

func TestCorruptStateRefused(t *testing.T) {
	for name, content := range map[string]string{
		"not json":       "{",
		"wrong version":  `{"version": 99, "disks": []}`,
		"duplicate slot": `{"version": 1, "disks": [{"slot": "a", "type": "nvme"}, {"slot": "a", "type": "nvme"}]}`,
		"pool slot":      `{"version": 1, "disks": [{"slot": "storage-pool", "type": "nvme"}]}`,
		"bad type":       `{"version": 1, "disks": [{"slot": "a", "type": "tape"}]}`,
		"no file path":   `{"version": 1, "disks": [{"slot": "a", "type": "file"}]}`,
		"bad export":     `{"version": 1, "disks": [{"slot": "a", "type": "nvme", "nvme-tcp-export": true}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, ".rdstest-state.json"), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := rdstest.NewServer(rdstest.WithDataDir(dir))
			if err == nil {
				s.Close()
				t.Fatal("NewServer accepted a state it cannot trust")
			}
		})
	}
}

// TestAddForeignDiskWhilePrinting is for -race: AddForeignDisk used to
// clear the pool usage cache after releasing the state lock.
func TestAddForeignDiskWhilePrinting(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20 {
			s.AddForeignDisk(rdstest.ForeignDisk{Slot: fmt.Sprintf("boot-%d", i), FilePath: fmt.Sprintf("/storage-pool/boot/%d.img", i), SizeBytes: 1 << 20})
		}
	}()
	for range 20 {
		ok(t, c, `/disk print detail where mount-point="storage-pool"`)
	}
	<-done
	out := ok(t, c, `/disk print detail where slot~"^boot-"`)
	if n := strings.Count(out, "type=file"); n != 20 {
		t.Errorf("%d foreign disks listed, want 20", n)
	}
}
