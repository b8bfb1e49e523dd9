package rdscsi_test

import (
	"path/filepath"
	"testing"

	"github.com/srvlab/rds-csi/internal/powercut"
	"github.com/srvlab/rds-csi/rdscsi"
)

// TestNodeStagePowerCut: the node's state directory is on a file system
// that loses, at a power cut, everything not fsynced, and does not exist
// yet, as on a fresh node. NodeStageVolume returns; the power goes. A node
// started on what the disk holds afterwards must find the stage record
// and accept it: staging again is the idempotent repeat, and unstaging
// disconnects the device the record names.
func TestNodeStagePowerCut(t *testing.T) {
	fs, backing, mnt := powercut.MountTemp(t)
	state := filepath.Join(mnt, "var", "lib", "rds-csi")
	e := nodeTestSetup(t, rdscsi.WithStateDir(state))
	id := e.createDisk(64 << 20)
	staging := filepath.Join(e.dir, "staging")
	e.must(e.stage(e.ns, id, staging, nodeTestMountCap("ext4", nodeTestSNW)))
	if err := fs.Cut(); err != nil {
		t.Fatal(err)
	}

	// The node restarts on the disk as it is after the power came back.
	after, err := powercut.Mount(backing, mnt)
	if err != nil {
		t.Fatal(err)
	}
	defer after.Unmount()
	records, _ := filepath.Glob(filepath.Join(backing, "var", "lib", "rds-csi", id+".json"))
	if len(records) != 1 {
		t.Fatalf("stage record of %s after the cut: %v", id, records)
	}
	ns := e.newServer(e.loop, rdscsi.WithStateDir(state))
	e.must(e.stage(ns, id, staging, nodeTestMountCap("ext4", nodeTestSNW)))
	if n := nodeTestMountCount(t, staging); n != 1 {
		t.Errorf("staging path mounted %d times after the repeat, want 1", n)
	}
	e.must(e.unstage(ns, id, staging))
	if n := nodeTestMountCount(t, staging); n != 0 {
		t.Errorf("staging path still mounted %d times after unstage", n)
	}
}
