package sanitytest

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// controllerSkips are the specs of the controller part (see Split) that
// csi-sanity skips from the capabilities the controller and identity
// services advertise, keyed by a substring of the spec's full text, with
// the reason.
var controllerSkips = map[string]string{
	"should fail when the volume is already published but is incompatible":    "PUBLISH_READONLY is not advertised: the attachment store does not record a readonly flag per node, so it could not be compared on retries or after a restart; a readonly ControllerPublishVolume is refused (InvalidArgument) and NodePublishVolume enforces readonly mounts",
	"should create volume with a volume attribute class":                      "MODIFY_VOLUME: RDS file disks have no mutable parameters",
	"should not create volume with an invalid volume attribute class":         "MODIFY_VOLUME: RDS file disks have no mutable parameters",
	"ModifyVolume [Controller Server]":                                        "MODIFY_VOLUME: RDS file disks have no mutable parameters",
	"should succeed when creating a snapshot with accessibility requirements": "SNAPSHOT_ACCESSIBILITY_CONSTRAINTS: snapshots live on the one RDS",
	"GroupController Service":                                                 "no GroupController service: RouterOS has no consistent multi-disk copy",
}

// nodeSkips are the specs of the node part (see Split) that csi-sanity
// skips from the node's advertised capabilities, with the reason; they
// are expected only when the Node Service specs really run.
var nodeSkips = map[string]string{
	"NodeGetStorageHealth": "the node does not advertise GET_STORAGE_HEALTH",
}

// ran is set by the first Claim of the process.
var ran atomic.Bool

// Claim skips t unless it may run csi-sanity: Ginkgo allows one RunSpecs
// per process and fails it outright under -count > 1, and csi-sanity is
// skipped with -short. rerun is the command that runs the test alone, for
// the skip message.
func Claim(t testing.TB, rerun string) {
	t.Helper()
	if f := flag.Lookup("test.count"); f != nil && f.Value.String() != "1" {
		t.Skipf("csi-sanity needs -count=1 (Ginkgo refuses -count=%s); run: %s", f.Value.String(), rerun)
	}
	if !ran.CompareAndSwap(false, true) {
		t.Skip("csi-sanity already ran in this process (Ginkgo allows one RunSpecs per process)")
	}
	if testing.Short() {
		t.Skip("csi-sanity takes a while; skipped with -short")
	}
}

// NodeUnavailable says why the Node Service specs (which stage volumes on
// loop devices and mount them) cannot run on this machine, or "" when they
// can. tools are the programs they need on PATH.
func NodeUnavailable(tools ...string) string {
	if os.Geteuid() != 0 {
		return "not running as root (loop devices and mounts need root)"
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return "no loop devices (/dev/loop-control missing)"
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " not installed"
		}
	}
	return ""
}

// NewConfig returns csi-sanity's configuration for the driver at address
// with the settings every rds-csi sanity run uses: each idempotent call
// repeated twice, the node attach limit tested, IDs of the driver's shape,
// a volume size xfs accepts, a CO-reserved parameter the driver must
// ignore, and snapshots in their own directory. Target and staging
// directories are pathPrefix-target and pathPrefix-staging.
func NewConfig(address, pathPrefix string) sanity.TestConfig {
	c := sanity.NewTestConfig()
	c.Address = address
	c.TargetPath = pathPrefix + "-target"
	c.StagingPath = pathPrefix + "-staging"
	c.TestVolumeSize = 512 << 20 // xfs needs at least 300 MiB
	c.IdempotentCount = 2
	c.TestNodeVolumeAttachLimit = true
	c.IDGen = IDGen{}
	c.TestVolumeParameters = map[string]string{
		// Added by the external-provisioner; must be ignored.
		"csi.storage.k8s.io/pvc/name": "sanity",
	}
	c.TestSnapshotParameters = map[string]string{"volumePath": "/storage-pool/sanity-snapshots"}
	return c
}

// Access is the volume access of one csi-sanity configuration. csi-sanity
// has no setting for the filesystem, so the interceptor Apply installs
// writes FsType into every mount capability that carries none; it also
// counts the NodeStageVolume calls made with this access, which proves the
// node specs really ran with it.
type Access struct {
	Block  bool   // raw block instead of a mount
	FsType string // forced into mount capabilities; "" keeps the driver's default
	staged atomic.Int64
}

// Apply sets the access type of c and adds the interceptor to both of its
// connections.
func (a *Access) Apply(c *sanity.TestConfig) {
	c.TestVolumeAccessType = "mount"
	if a.Block {
		c.TestVolumeAccessType = "block"
	}
	intercept := grpc.WithChainUnaryInterceptor(a.intercept)
	c.DialOptions = append(c.DialOptions, intercept)
	c.ControllerDialOptions = append(c.ControllerDialOptions, intercept)
}

// Staged is the number of NodeStageVolume calls made with this access.
func (a *Access) Staged() int64 { return a.staged.Load() }

// String names the access for logs.
func (a *Access) String() string {
	switch {
	case a.Block:
		return "block access"
	case a.FsType == "":
		return "default filesystem (ext4)"
	}
	return a.FsType
}

func (a *Access) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if m, ok := req.(proto.Message); ok && a.FsType != "" {
		setFsType(m.ProtoReflect(), a.FsType)
	}
	if s, ok := req.(*csi.NodeStageVolumeRequest); ok {
		vc := s.GetVolumeCapability()
		if a.Block && vc.GetBlock() != nil ||
			!a.Block && vc.GetMount() != nil && vc.GetMount().GetFsType() == a.FsType {
			a.staged.Add(1)
		}
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// setFsType sets fs in every MountVolume nested in m that has none.
func setFsType(m protoreflect.Message, fs string) {
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
		setFsType(n, fs)
	}
}

// IDGen makes IDs of rds-csi's shape (pvc-<uuid>), so that the "valid but
// missing" specs exercise real lookups on the RDS instead of the
// malformed-ID shortcut.
type IDGen struct{}

var _ sanity.IDGenerator = IDGen{}

func uuid() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// GenerateUniqueValidVolumeID returns pvc-<random uuid>.
func (IDGen) GenerateUniqueValidVolumeID() string { return "pvc-" + uuid() }

// GenerateInvalidVolumeID returns an ID the driver rejects as malformed.
func (IDGen) GenerateInvalidVolumeID() string { return "fake-vol-id" }

// GenerateUniqueValidNodeID returns node-<random uuid>.
func (IDGen) GenerateUniqueValidNodeID() string { return "node-" + uuid() }

// GenerateInvalidNodeID returns a node ID no node has.
func (IDGen) GenerateInvalidNodeID() string { return "fake-node-id" }
