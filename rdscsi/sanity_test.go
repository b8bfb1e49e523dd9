package rdscsi_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"google.golang.org/grpc"

	"github.com/srvlab/rds-csi/internal/sanitytest"
	"github.com/srvlab/rds-csi/rdscsi"
	"github.com/srvlab/rds-csi/rdscsi/rdscsitest"
)

// csi-sanity runs inside go test, over a unix socket, against the
// Identity, Controller and Node servers backed by rdstest, an
// attach.Manager on a FileStore and the rdstest loop connector. It runs in
// three configurations: mount with ext4, mount with xfs, and raw block.
//
// Specs that do not apply are skipped by csi-sanity itself, from the
// capabilities the driver advertises. The expected skips, with their
// reasons, are listed in internal/sanitytest (shared with the plugin's
// csi-sanity test). Ginkgo allows one RunSpecs per process, so the specs of
// all three configurations run once and are judged in two subtests:
// "controller" (Controller and Identity specs, which need no devices)
// always, and "node" (Node Service specs, which stage on loop devices)
// only where root and loop devices are there; elsewhere it is skipped with
// the reason rather than passing with nothing run. Each fails if a spec of
// its part is skipped that is not listed for it, or if a spec listed for
// it no longer skips (so the list cannot rot).

// ctrlSanityMaxVolumes is the node's max_volumes_per_node, enforced by the
// controller too (TestNodeVolumeAttachLimit); small, because the spec
// publishes that many volumes plus one.
const ctrlSanityMaxVolumes = 3

func TestSanity(t *testing.T) {
	sanitytest.Claim(t, "go test -race -count=1 -run TestSanity ./rdscsi/")
	nodeReason := sanitytest.NodeUnavailable("losetup", "mkfs.ext4", "mkfs.xfs", "blkid")

	const nodeID = "sanity-node"
	dir := ctrlTestShortDir(t)
	var loop *rdscsitest.LoopConnector
	var nodeSrv *rdscsi.NodeServer
	e := newCtrlTestEnv(t, ctrlTestConfig{
		ctrlOpts: []rdscsi.ControllerOption{
			rdscsi.WithNodeLookup(func(_ context.Context, id string) (bool, error) { return id == nodeID, nil }),
			rdscsi.WithMaxVolumesPerNode(ctrlSanityMaxVolumes),
		},
		setup: func(env *ctrlTestEnv) {
			loop = rdscsitest.NewLoopConnector(env.rds)
			t.Cleanup(func() { loop.Close() })
			var err error
			nodeSrv, err = rdscsi.NewNodeServer(nodeID, loop, rdscsi.WithStateDir(filepath.Join(dir, "node-state")),
				rdscsi.WithMaxVolumesPerNode(ctrlSanityMaxVolumes))
			if err != nil {
				t.Fatal(err)
			}
		},
		register: func(r grpc.ServiceRegistrar) { nodeSrv.Register(r) },
	})

	runs := []*ctrlSanityRun{
		{name: "mount-ext4", access: &sanitytest.Access{}},
		{name: "mount-xfs", access: &sanitytest.Access{FsType: "xfs"}},
		{name: "block", access: &sanitytest.Access{Block: true}},
	}
	for _, run := range runs {
		run.configure(e, dir)
		ginkgo.Describe("["+run.name+"]", func() {
			run.ctx = sanity.GinkgoTest(&run.cfg)
		})
	}
	reports := sanitytest.Run(t, "rdscsi csi-sanity", nodeReason, 15*time.Minute)
	for _, run := range runs {
		if run.ctx != nil {
			run.ctx.Finalize()
		}
	}

	ctrlPart, nodePart := sanitytest.Split(reports)
	t.Run("controller", func(t *testing.T) {
		ctrlPart.Check(t)
	})
	t.Run("node", func(t *testing.T) {
		if nodeReason != "" {
			t.Skipf("Node Service specs not run (%d skipped in %d configurations): %s", len(nodePart.Reports), len(runs), nodeReason)
		}
		nodePart.Check(t)
		for _, run := range runs {
			t.Logf("%s: stage requests with %s: %d", run.name, run.access, run.access.Staged())
			if run.access.Staged() == 0 {
				t.Errorf("%s: no NodeStageVolume went through", run.name)
			}
		}
	})

	if s := e.diskSlots(t, "pvc-"); len(s) != 0 {
		t.Errorf("volumes left on the RDS after sanity: %v", s)
	}
	if s := e.diskSlots(t, "snap-"); len(s) != 0 {
		t.Errorf("snapshots left on the RDS after sanity: %v", s)
	}
	if n := e.manager.Counts().NodeAttachments; n != 0 {
		t.Errorf("%d attachments left after sanity", n)
	}
}

// ctrlSanityRun is one csi-sanity configuration.
type ctrlSanityRun struct {
	name   string
	access *sanitytest.Access
	cfg    sanity.TestConfig
	ctx    *sanity.TestContext
}

func (r *ctrlSanityRun) configure(e *ctrlTestEnv, dir string) {
	c := sanitytest.NewConfig("unix://"+e.socket, filepath.Join(dir, r.name))
	c.TestVolumeParameters["volumePath"] = "/storage-pool/sanity-" + r.name
	r.access.Apply(&c)
	r.cfg = c
}
