package rdscsi_test

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	"github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/rdsclient/rdstest"
	"github.com/srvlab/rds-csi/rdscsi"
)

// csi-sanity runs inside go test, over a unix socket, against the
// Identity, Controller and Node servers backed by rdstest, an
// attach.Manager on a FileStore and the rdstest loop connector. It runs in
// three configurations: mount with ext4, mount with xfs, and raw block.
//
// Specs that do not apply are skipped by csi-sanity itself, from the
// capabilities the driver advertises. Each one is listed here with the
// reason; the test fails if a spec is skipped that is not listed, or if a
// listed spec no longer skips (so the list cannot rot).
var ctrlSanityExpectedSkips = map[string]string{
	// Controller.
	"should fail when the volume is already published but is incompatible":    "PUBLISH_READONLY is not advertised: the attachment store does not record a readonly flag per node, so it could not be compared on retries or after a restart; a readonly ControllerPublishVolume is refused (InvalidArgument) and NodePublishVolume enforces readonly mounts",
	"should create volume with a volume attribute class":                      "MODIFY_VOLUME: RDS file disks have no mutable parameters",
	"should not create volume with an invalid volume attribute class":         "MODIFY_VOLUME: RDS file disks have no mutable parameters",
	"ModifyVolume [Controller Server]":                                        "MODIFY_VOLUME: RDS file disks have no mutable parameters",
	"should succeed when creating a snapshot with accessibility requirements": "SNAPSHOT_ACCESSIBILITY_CONSTRAINTS: snapshots live on the one RDS",
	"GroupController Service":                                                 "no GroupController service: RouterOS has no consistent multi-disk copy",
}

// ctrlSanityNodeExpectedSkips are added when the Node service is really
// exercised; they depend on the node's advertised capabilities.
var ctrlSanityNodeExpectedSkips = map[string]string{
	"NodeGetStorageHealth": "the node does not advertise GET_STORAGE_HEALTH",
}

// ctrlSanityMaxVolumes is the node's max_volumes_per_node, enforced by the
// controller too (TestNodeVolumeAttachLimit); small, because the spec
// publishes that many volumes plus one.
const ctrlSanityMaxVolumes = 3

// ctrlSanityRan guards RunSpecs, which Ginkgo allows once per process.
var ctrlSanityRan atomic.Bool

func TestSanity(t *testing.T) {
	if f := flag.Lookup("test.count"); f != nil && f.Value.String() != "1" {
		// Ginkgo fails RunSpecs outright under -count > 1.
		t.Skipf("csi-sanity needs -count=1 (Ginkgo refuses -count=%s); run: go test -race -count=1 -run TestSanity ./rdscsi/", f.Value.String())
	}
	if !ctrlSanityRan.CompareAndSwap(false, true) {
		t.Skip("csi-sanity already ran in this process (Ginkgo allows one RunSpecs per process, e.g. with -count > 1)")
	}
	if testing.Short() {
		t.Skip("csi-sanity takes a while; skipped with -short")
	}
	nodeReason := ctrlSanityNodeUnavailable()
	if nodeReason != "" {
		t.Logf("Node service specs SKIPPED: %s. Controller and Identity specs still run.", nodeReason)
	}

	const nodeID = "sanity-node"
	dir := ctrlTestShortDir(t)
	var loop *rdstest.LoopConnector
	var nodeSrv *rdscsi.NodeServer
	e := newCtrlTestEnv(t, ctrlTestConfig{
		ctrlOpts: []rdscsi.ControllerOption{
			rdscsi.WithNodeLookup(func(_ context.Context, id string) (bool, error) { return id == nodeID, nil }),
			rdscsi.WithMaxVolumesPerNode(ctrlSanityMaxVolumes),
		},
		setup: func(env *ctrlTestEnv) {
			loop = rdstest.NewLoopConnector(env.rds)
			t.Cleanup(func() { loop.Close() })
			var err error
			nodeSrv, err = rdscsi.NewNodeServer(nodeID, loop, rdscsi.WithStateDir(filepath.Join(dir, "node-state")),
				rdscsi.WithMaxVolumes(ctrlSanityMaxVolumes))
			if err != nil {
				t.Fatal(err)
			}
		},
		register: func(r grpc.ServiceRegistrar) { nodeSrv.Register(r) },
	})

	runs := []*ctrlSanityRun{
		{name: "mount-ext4", access: "mount"},
		{name: "mount-xfs", access: "mount", fsType: "xfs"},
		{name: "block", access: "block"},
	}
	gomega.RegisterFailHandler(ginkgo.Fail)
	for _, run := range runs {
		run.configure(e, dir)
		ginkgo.Describe("["+run.name+"]", func() {
			run.ctx = sanity.GinkgoTest(&run.cfg)
		})
	}
	var (
		mu      sync.Mutex
		reports []types.SpecReport
	)
	ginkgo.ReportAfterEach(func(r types.SpecReport) {
		mu.Lock()
		defer mu.Unlock()
		reports = append(reports, r)
	})

	suite, reporter := ginkgo.GinkgoConfiguration()
	suite.Timeout = 15 * time.Minute
	suite.FailOnPending = false
	if nodeReason != "" {
		// The Node Service specs stage and mount; controller specs use
		// the node only for NodeGetInfo, which works without devices.
		suite.SkipStrings = append(suite.SkipStrings, "Node Service")
	}
	reporter.Succinct = true
	reporter.SilenceSkips = true
	reporter.NoColor = true
	// csi-test logs every cleanup through klog; keep go test output
	// readable.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	ginkgo.RunSpecs(t, "rdscsi csi-sanity", suite, reporter)
	fmt.Println() // end Ginkgo's progress line
	for _, run := range runs {
		if run.ctx != nil {
			run.ctx.Finalize()
		}
	}

	// Account for every spec.
	expected := map[string]string{}
	for k, v := range ctrlSanityExpectedSkips {
		expected[k] = v
	}
	if nodeReason == "" {
		for k, v := range ctrlSanityNodeExpectedSkips {
			expected[k] = v
		}
	}
	used := map[string]int{}
	counts := map[string]int{}
	for _, r := range reports {
		name := r.FullText()
		counts[r.State.String()]++
		switch r.State {
		case types.SpecStatePassed:
		case types.SpecStatePending:
			// csi-test's own disabled (XIt) pagination spec.
			if !strings.Contains(name, "pagination should detect volumes added between pages") {
				t.Errorf("pending spec: %s", name)
			}
		case types.SpecStateSkipped:
			if nodeReason != "" && strings.Contains(name, "Node Service") {
				continue
			}
			key := ""
			for k := range expected {
				if strings.Contains(name, k) {
					key = k
				}
			}
			if key == "" {
				t.Errorf("unexpected skip: %s: %s", name, r.Failure.Message)
				continue
			}
			used[key]++
		default:
			t.Errorf("%s: %s\n%s\n%s", r.State, name, r.Failure.Message, r.Failure.Location)
		}
	}
	for k, why := range expected {
		if used[k] == 0 {
			t.Errorf("listed skip %q did not happen: remove it from the list", k)
		}
		t.Logf("skipped %2d x %q: %s", used[k], k, why)
	}
	for _, run := range runs {
		t.Logf("%s: stage requests with %s: %d", run.name, run.fsTypeLabel(), run.staged.Load())
		if nodeReason == "" && run.staged.Load() == 0 {
			t.Errorf("%s: no NodeStageVolume went through", run.name)
		}
	}
	t.Logf("csi-sanity specs: %v (3 configurations)", counts)
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

// ctrlSanityNodeUnavailable says why the Node service cannot be
// exercised here, or "" when it can.
func ctrlSanityNodeUnavailable() string {
	if os.Geteuid() != 0 {
		return "not running as root (loop devices and mounts need root)"
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return "no loop devices (/dev/loop-control missing)"
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "mkfs.xfs", "blkid"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " not installed"
		}
	}
	return ""
}

// ctrlSanityRun is one csi-sanity configuration.
type ctrlSanityRun struct {
	name   string
	access string // "mount" or "block"
	fsType string // forced into every mount capability; "" leaves the default (ext4)
	cfg    sanity.TestConfig
	ctx    *sanity.TestContext
	staged atomic.Int64 // NodeStageVolume calls seen with the expected access type
}

func (r *ctrlSanityRun) fsTypeLabel() string {
	switch {
	case r.access == "block":
		return "block access"
	case r.fsType == "":
		return "default filesystem (ext4)"
	}
	return r.fsType
}

func (r *ctrlSanityRun) configure(e *ctrlTestEnv, dir string) {
	c := sanity.NewTestConfig()
	c.Address = "unix://" + e.socket
	c.TargetPath = filepath.Join(dir, r.name+"-target")
	c.StagingPath = filepath.Join(dir, r.name+"-staging")
	c.TestVolumeSize = 512 << 20 // xfs needs at least 300 MiB
	c.TestVolumeAccessType = r.access
	c.IdempotentCount = 2
	c.TestNodeVolumeAttachLimit = true
	c.IDGen = ctrlSanityIDGen{}
	c.TestVolumeParameters = map[string]string{
		"volumePath": "/storage-pool/sanity-" + r.name,
		// Added by the external-provisioner; must be ignored.
		"csi.storage.k8s.io/pvc/name": "sanity",
	}
	c.TestSnapshotParameters = map[string]string{"volumePath": "/storage-pool/sanity-snapshots"}
	intercept := grpc.WithChainUnaryInterceptor(r.clientInterceptor)
	c.DialOptions = append(c.DialOptions, intercept)
	c.ControllerDialOptions = append(c.ControllerDialOptions, intercept)
	r.cfg = c
}

// clientInterceptor forces the run's filesystem into every mount
// capability csi-sanity sends (it has no setting for it), and counts the
// NodeStageVolume calls that carry it.
func (r *ctrlSanityRun) clientInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if m, ok := req.(proto.Message); ok && r.fsType != "" {
		ctrlSanitySetFsType(m.ProtoReflect(), r.fsType)
	}
	if s, ok := req.(*csi.NodeStageVolumeRequest); ok {
		vc := s.GetVolumeCapability()
		if r.access == "block" && vc.GetBlock() != nil ||
			r.access == "mount" && vc.GetMount() != nil && vc.GetMount().GetFsType() == r.fsType {
			r.staged.Add(1)
		}
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

func ctrlSanitySetFsType(m protoreflect.Message, fs string) {
	if m.Descriptor().FullName() == "csi.v1.VolumeCapability.MountVolume" {
		fd := m.Descriptor().Fields().ByName("fs_type")
		if m.Get(fd).String() == "" {
			m.Set(fd, protoreflect.ValueOfString(fs))
		}
		return
	}
	var nested []protoreflect.Message
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				nested = append(nested, v.List().Get(i).Message())
			}
		case !fd.IsMap() && !fd.IsList() && fd.Message() != nil:
			nested = append(nested, v.Message())
		}
		return true
	})
	for _, n := range nested {
		ctrlSanitySetFsType(n, fs)
	}
}

// ctrlSanityIDGen makes IDs of this driver's shape, so the "valid but
// missing" specs exercise real lookups on the RDS instead of the
// malformed-ID shortcut.
type ctrlSanityIDGen struct{}

func ctrlSanityUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func (ctrlSanityIDGen) GenerateUniqueValidVolumeID() string { return "pvc-" + ctrlSanityUUID() }
func (ctrlSanityIDGen) GenerateInvalidVolumeID() string     { return "fake-vol-id" }
func (ctrlSanityIDGen) GenerateUniqueValidNodeID() string   { return "node-" + ctrlSanityUUID() }
func (ctrlSanityIDGen) GenerateInvalidNodeID() string       { return "fake-node-id" }
