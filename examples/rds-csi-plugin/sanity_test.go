package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"

	"github.com/srvlab/rds-csi/internal/sanitytest"
)

// sanityMaxVolumes is --max-volumes of the sanity run: csi-sanity publishes
// that many volumes plus one and expects the last to be refused.
const sanityMaxVolumes = "3"

// csi-sanity against the built plugin, as an external CO talks to it: one
// process with --simulate --mode all on a unix socket, everything it needs
// given by flags (volume path, node ID, attach limit), ext4 mounts staged
// on loop devices. rdscsi's TestSanity covers xfs and raw block against
// servers assembled in the test; this one proves the binary's wiring. The
// expected skips are internal/sanitytest's, shared with it.
//
// Ginkgo runs every spec in one RunSpecs per process, so the specs run
// once and are judged in two parts (sanitytest.Split), each in a subtest:
// "controller" (Controller and Identity specs, which need no devices)
// always, and "node" (Node Service specs, which stage on loop devices)
// only where root and loop devices are there; elsewhere it is skipped,
// with the reason, rather than passing with nothing run.
func TestSanity(t *testing.T) {
	sanitytest.Claim(t, "go test -race -count=1 -run TestSanity ./examples/rds-csi-plugin/")
	nodeReason := sanitytest.NodeUnavailable("losetup", "mkfs.ext4", "blkid")
	start := time.Now()

	dir := t.TempDir()
	before := leftovers(t, dir)
	sock := filepath.Join(dir, "csi.sock")
	s := startServing(t, nil,
		"--simulate", "--simulate-dir", filepath.Join(dir, "sim"),
		"--mode", "all",
		"--endpoint", "unix://"+sock,
		"--node-id", "sanity-node",
		"--volume-path", "/storage-pool/sanity-plugin",
		"--max-volumes", sanityMaxVolumes,
		"--log-format", "json",
	)

	access := &sanitytest.Access{FsType: "ext4"}
	cfg := sanitytest.NewConfig("unix://"+sock, filepath.Join(dir, "sanity"))
	access.Apply(&cfg)
	var sc *sanity.TestContext
	ginkgo.Describe("[rds-csi-plugin mount-ext4]", func() {
		sc = sanity.GinkgoTest(&cfg)
	})
	reports := sanitytest.Run(t, "rds-csi-plugin csi-sanity", nodeReason, 3*time.Minute)
	if sc != nil {
		sc.Finalize()
	}
	ctrlPart, nodePart := sanitytest.Split(reports)

	t.Run("controller", func(t *testing.T) {
		ctrlPart.Check(t)
	})
	t.Run("node", func(t *testing.T) {
		if nodeReason != "" {
			t.Skipf("Node Service specs not run (%d skipped): %s", len(nodePart.Reports), nodeReason)
		}
		nodePart.Check(t)
		t.Logf("stage requests with %s: %d", access, access.Staged())
		if access.Staged() == 0 {
			t.Error("no NodeStageVolume went through")
		}
	})

	// csi-sanity deletes what it creates: the device and the attachment
	// state must be empty again.
	ctrl := csi.NewControllerClient(s.conn)
	if vols := publishedNodes(t, ctrl); len(vols) != 0 {
		t.Errorf("volumes left after sanity: %v", vols)
	}
	snaps, err := ctrl.ListSnapshots(rpcCtx(t), &csi.ListSnapshotsRequest{})
	if err != nil {
		t.Errorf("ListSnapshots: %v", err)
	} else if len(snaps.GetEntries()) != 0 {
		t.Errorf("%d snapshots left after sanity", len(snaps.GetEntries()))
	}

	s.signal(syscall.SIGTERM)
	if code := s.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	jsonRecords(t, s.stderr())
	if after := leftovers(t, dir); !slices.Equal(after, before) {
		t.Errorf("loop devices or mounts under %s left behind:\nbefore: %q\nafter:  %q", dir, before, after)
	}
	t.Logf("csi-sanity against the plugin binary took %v", time.Since(start).Round(100*time.Millisecond))
}

// leftovers lists the loop devices (losetup -a) and mounts
// (/proc/self/mountinfo) that refer to dir: the plugin's staging and
// target mounts and the loop devices over its simulated disks.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(mi), "\n") {
		if strings.Contains(l, dir) {
			out = append(out, "mount: "+l)
		}
	}
	if _, err := exec.LookPath("losetup"); err == nil {
		loops, err := exec.Command("losetup", "-a").Output()
		if err != nil {
			t.Fatalf("losetup -a: %v", err)
		}
		for l := range strings.SplitSeq(string(loops), "\n") {
			if strings.Contains(l, dir) {
				out = append(out, "loop: "+l)
			}
		}
	}
	return out
}
