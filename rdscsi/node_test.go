package rdscsi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"

	"github.com/srvlab/rds-csi/metrics"
	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
	"github.com/srvlab/rds-csi/rdscsi"
	"github.com/srvlab/rds-csi/rdscsi/nvme"
	"github.com/srvlab/rds-csi/rdscsi/rdscsitest"
)

// ---- helpers (prefixed nodeTest to stay clear of the controller tests) ----

// nodeTestRecorder counts what the node reports.
type nodeTestRecorder struct {
	metrics.Noop
	mu     sync.Mutex
	counts map[string]int
}

func (r *nodeTestRecorder) inc(k string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.counts == nil {
		r.counts = map[string]int{}
	}
	r.counts[k]++
}

func (r *nodeTestRecorder) get(k string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[k]
}

func (r *nodeTestRecorder) NVMeConnect(_ context.Context, s string, _ time.Duration) {
	r.inc("connect:" + s)
}

func (r *nodeTestRecorder) NVMeDisconnect(_ context.Context, s string, _ time.Duration) {
	r.inc("disconnect:" + s)
}

func (r *nodeTestRecorder) MountOperation(_ context.Context, op, s string, _ time.Duration) {
	r.inc(op + ":" + s)
}

func (r *nodeTestRecorder) StaleMount(context.Context) { r.inc("stale") }

// nodeTestFakeConnector is a Connector without devices, for argument
// checks that need no root.
type nodeTestFakeConnector struct {
	mu            sync.Mutex
	calls         []string
	disconnectErr error
	block         chan struct{} // when set, Connect waits for it
	entered       chan struct{} // when set, the one Connect closes it before waiting
}

func (c *nodeTestFakeConnector) record(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, s)
}

func (c *nodeTestFakeConnector) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

func (c *nodeTestFakeConnector) Connect(ctx context.Context, t nvme.Target) (string, error) {
	c.record("connect " + t.NQN)
	if c.entered != nil {
		close(c.entered)
	}
	if c.block != nil {
		select {
		case <-c.block:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return "", errors.New("fake connector has no devices")
}

func (c *nodeTestFakeConnector) Device(_ context.Context, nqn string) (string, error) {
	c.record("device " + nqn)
	return "", fmt.Errorf("%w: %s", nvme.ErrNotConnected, nqn)
}

func (c *nodeTestFakeConnector) Disconnect(_ context.Context, nqn string) error {
	c.record("disconnect " + nqn)
	return c.disconnectErr
}

// nodeTestDisconnectHook calls hook when a Disconnect begins.
type nodeTestDisconnectHook struct {
	nvme.Connector
	hook func()
}

func (c nodeTestDisconnectHook) Disconnect(ctx context.Context, nqn string) error {
	c.hook()
	return c.Connector.Disconnect(ctx, nqn)
}

// nodeTestSwapConnector resolves some NQNs to another volume's device, as
// a connector bug or a reused controller number would.
type nodeTestSwapConnector struct {
	nvme.Connector
	mu   sync.Mutex
	swap map[string]string
}

func (c *nodeTestSwapConnector) to(nqn string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.swap[nqn]; ok {
		return s
	}
	return nqn
}

func (c *nodeTestSwapConnector) Connect(ctx context.Context, t nvme.Target) (string, error) {
	t.NQN = c.to(t.NQN)
	return c.Connector.Connect(ctx, t)
}

func (c *nodeTestSwapConnector) Device(ctx context.Context, nqn string) (string, error) {
	return c.Connector.Device(ctx, c.to(nqn))
}

// nodeTestExec wraps the real exec: it records commands and can make
// blkid fail the way a device that is not ready makes it fail.
type nodeTestExec struct {
	utilexec.Interface
	blkidExit atomic.Int32 // 0: real blkid; otherwise this exit status
	mu        sync.Mutex
	calls     []string
}

func (e *nodeTestExec) Command(cmd string, args ...string) utilexec.Cmd {
	return e.CommandContext(context.Background(), cmd, args...)
}

func (e *nodeTestExec) CommandContext(ctx context.Context, cmd string, args ...string) utilexec.Cmd {
	e.mu.Lock()
	e.calls = append(e.calls, cmd+" "+strings.Join(args, " "))
	e.mu.Unlock()
	if code := e.blkidExit.Load(); cmd == "blkid" && code != 0 {
		return e.Interface.CommandContext(ctx, "sh", "-c", fmt.Sprintf("echo 'blkid: device not ready' >&2; exit %d", code))
	}
	return e.Interface.CommandContext(ctx, cmd, args...)
}

func (e *nodeTestExec) ran(prefix string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func nodeTestCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code %v (%v), want %v", got, err, want)
	}
}

func nodeTestMountCap(fsType string, mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fsType}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func nodeTestBlockCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

const nodeTestSNW = csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER

var nodeTestSeq atomic.Int64

func nodeTestVolumeID(t *testing.T) string {
	return rdscsi.VolumeIDForName(fmt.Sprintf("%s-%d-%d", t.Name(), time.Now().UnixNano(), nodeTestSeq.Add(1)))
}

func nodeTestContext(id string) map[string]string {
	return map[string]string{
		rdscsi.ContextNQN:       rdscsi.NQN(id),
		rdscsi.ParamNVMeAddress: "127.0.0.1",
		rdscsi.ParamNVMePort:    "4420",
		rdscsi.ParamVolumePath:  "/" + rdstest.DefaultPool + "/k8s",
	}
}

// nodeTestRequireLoop skips when loop devices cannot be used; anything
// else missing is a failure.
func nodeTestRequireLoop(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("node tests with real devices need root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("node tests with real devices need /dev/loop-control")
	}
	for _, tool := range []string{"losetup", "blkid", "mkfs.ext4", "mkfs.xfs", "resize2fs", "xfs_growfs", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (apt-get install -y e2fsprogs xfsprogs util-linux)", tool)
		}
	}
}

// capSysResource is the capability bit online ext4 growth needs.
const capSysResource = 24

// nodeTestHasCap reports whether this process has capability bit c.
func nodeTestHasCap(c uint) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			var mask uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &mask); err != nil {
				return false
			}
			return mask&(1<<c) != 0
		}
	}
	return false
}

// nodeTestEnv is a fake RDS, a loop connector on it and a NodeServer.
type nodeTestEnv struct {
	t      *testing.T
	srv    *rdstest.Server
	client *rdsclient.Client
	loop   *rdscsitest.LoopConnector
	ns     *rdscsi.NodeServer
	rec    *nodeTestRecorder
	exec   *nodeTestExec
	dir    string // staging and target paths live here
	state  string
}

func nodeTestSetup(t *testing.T, opts ...rdscsi.NodeOption) *nodeTestEnv {
	t.Helper()
	nodeTestRequireLoop(t)
	srv, err := rdstest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	ctx := context.Background()
	client, err := rdsclient.Dial(ctx, srv.Addr(), srv.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	loop := rdscsitest.NewLoopConnector(srv)
	t.Cleanup(func() {
		if err := loop.Close(); err != nil {
			t.Errorf("detaching loop devices: %v", err)
		}
	})
	e := &nodeTestEnv{t: t, srv: srv, client: client, loop: loop, rec: &nodeTestRecorder{}, dir: t.TempDir(), state: t.TempDir()}
	e.exec = &nodeTestExec{Interface: utilexec.New()}
	// Runs first: nothing may stay mounted when the loops are detached.
	t.Cleanup(func() { nodeTestUnmountUnder(t, e.dir) })
	e.ns = e.newServer(loop, opts...)
	return e
}

func (e *nodeTestEnv) newServer(conn nvme.Connector, opts ...rdscsi.NodeOption) *rdscsi.NodeServer {
	e.t.Helper()
	base := []rdscsi.NodeOption{
		rdscsi.WithStateDir(e.state),
		rdscsi.WithRecorder(e.rec),
		rdscsi.WithExec(e.exec),
		rdscsi.WithProbeRetries(3, 20*time.Millisecond),
	}
	ns, err := rdscsi.NewNodeServer("node-1", conn, append(base, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	return ns
}

// nodeTestUnmountUnder unmounts everything below dir, deepest first.
func nodeTestUnmountUnder(t *testing.T, dir string) {
	for range 32 {
		infos, err := mount.ParseMountInfo("/proc/self/mountinfo")
		if err != nil {
			t.Errorf("mount table: %v", err)
			return
		}
		var under []string
		for _, m := range infos {
			if m.MountPoint == dir || strings.HasPrefix(m.MountPoint, dir+"/") {
				under = append(under, m.MountPoint)
			}
		}
		if len(under) == 0 {
			return
		}
		sort.Slice(under, func(i, j int) bool { return len(under[i]) > len(under[j]) })
		for _, p := range under {
			_ = exec.Command("umount", p).Run()
		}
	}
	t.Errorf("mounts left below %s", dir)
}

func (e *nodeTestEnv) createDisk(size int64) string {
	e.t.Helper()
	id := nodeTestVolumeID(e.t)
	_, err := e.client.CreateDisk(context.Background(), rdsclient.DiskSpec{
		Slot:      id,
		FilePath:  "/" + rdstest.DefaultPool + "/k8s/" + id + ".img",
		SizeBytes: size,
		Export:    &rdsclient.NVMeExport{Port: 4420, NQN: rdscsi.NQN(id)},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *nodeTestEnv) stage(ns *rdscsi.NodeServer, id, staging string, vc *csi.VolumeCapability) error {
	_, err := ns.NodeStageVolume(context.Background(), &csi.NodeStageVolumeRequest{
		VolumeId: id, StagingTargetPath: staging, VolumeCapability: vc, VolumeContext: nodeTestContext(id),
	})
	return err
}

func (e *nodeTestEnv) unstage(ns *rdscsi.NodeServer, id, staging string) error {
	_, err := ns.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
	return err
}

func (e *nodeTestEnv) publish(ns *rdscsi.NodeServer, id, staging, target string, vc *csi.VolumeCapability, ro bool) error {
	_, err := ns.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: vc, Readonly: ro,
		VolumeContext: nodeTestContext(id),
	})
	return err
}

func (e *nodeTestEnv) unpublish(ns *rdscsi.NodeServer, id, target string) error {
	_, err := ns.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
	return err
}

func (e *nodeTestEnv) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

func nodeTestMountCount(t *testing.T, p string) int {
	t.Helper()
	infos, err := mount.ParseMountInfo("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range infos {
		if m.MountPoint == p {
			n++
		}
	}
	return n
}

// ---- tests without devices ----

func TestNodeCapabilitiesAndInfo(t *testing.T) {
	ns, err := rdscsi.NewNodeServer("worker-7", &nodeTestFakeConnector{}, rdscsi.WithStateDir(t.TempDir()),
		rdscsi.WithMaxVolumesPerNode(12), rdscsi.WithTopology(map[string]string{"topology.rds.csi.srvlab.io/node": "worker-7"}))
	if err != nil {
		t.Fatal(err)
	}
	caps, err := ns.NodeGetCapabilities(context.Background(), &csi.NodeGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range caps.GetCapabilities() {
		got = append(got, c.GetRpc().GetType().String())
	}
	sort.Strings(got)
	want := []string{"EXPAND_VOLUME", "GET_VOLUME_HEALTH", "GET_VOLUME_STATS", "SINGLE_NODE_MULTI_WRITER", "STAGE_UNSTAGE_VOLUME"}
	if !slices.Equal(got, want) {
		t.Fatalf("capabilities %v, want %v", got, want)
	}
	info, err := ns.NodeGetInfo(context.Background(), &csi.NodeGetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetNodeId() != "worker-7" || info.GetMaxVolumesPerNode() != 12 ||
		info.GetAccessibleTopology().GetSegments()["topology.rds.csi.srvlab.io/node"] != "worker-7" {
		t.Fatalf("info %v", info)
	}

	def, err := rdscsi.NewNodeServer("worker-8", &nodeTestFakeConnector{}, rdscsi.WithStateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	info, _ = def.NodeGetInfo(context.Background(), &csi.NodeGetInfoRequest{})
	if info.GetMaxVolumesPerNode() != rdscsi.DefaultMaxVolumesPerNode || info.GetAccessibleTopology() != nil {
		t.Fatalf("defaults: %v", info)
	}

	for name, c := range map[string]func() (*rdscsi.NodeServer, error){
		"no node":      func() (*rdscsi.NodeServer, error) { return rdscsi.NewNodeServer("", &nodeTestFakeConnector{}) },
		"no connector": func() (*rdscsi.NodeServer, error) { return rdscsi.NewNodeServer("n", nil) },
		"relative dir": func() (*rdscsi.NodeServer, error) {
			return rdscsi.NewNodeServer("n", &nodeTestFakeConnector{}, rdscsi.WithStateDir("state"))
		},
		"negative max": func() (*rdscsi.NodeServer, error) {
			return rdscsi.NewNodeServer("n", &nodeTestFakeConnector{}, rdscsi.WithStateDir(t.TempDir()), rdscsi.WithMaxVolumesPerNode(-1))
		},
		"nil mounter": func() (*rdscsi.NodeServer, error) {
			return rdscsi.NewNodeServer("n", &nodeTestFakeConnector{}, rdscsi.WithStateDir(t.TempDir()), rdscsi.WithMounter(nil))
		},
		"nil exec": func() (*rdscsi.NodeServer, error) {
			return rdscsi.NewNodeServer("n", &nodeTestFakeConnector{}, rdscsi.WithStateDir(t.TempDir()), rdscsi.WithExec(nil))
		},
		"bad topology": func() (*rdscsi.NodeServer, error) {
			return rdscsi.NewNodeServer("n", &nodeTestFakeConnector{}, rdscsi.WithStateDir(t.TempDir()), rdscsi.WithTopology(map[string]string{"zone": "a b"}))
		},
		"negative release timeout": func() (*rdscsi.NodeServer, error) {
			return rdscsi.NewNodeServer("n", &nodeTestFakeConnector{}, rdscsi.WithStateDir(t.TempDir()), rdscsi.WithDeviceReleaseTimeout(-time.Second))
		},
	} {
		if _, err := c(); !errors.Is(err, rdscsi.ErrInvalidArgument) {
			t.Errorf("%s: err %v, want ErrInvalidArgument", name, err)
		}
	}
}

func TestNodeRegister(t *testing.T) {
	ns, err := rdscsi.NewNodeServer("n", &nodeTestFakeConnector{}, rdscsi.WithStateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	ns.Register(g)
	if _, ok := g.GetServiceInfo()["csi.v1.Node"]; !ok {
		t.Fatalf("services %v", g.GetServiceInfo())
	}
}

func TestNodeRequestValidation(t *testing.T) {
	conn := &nodeTestFakeConnector{}
	ns, err := rdscsi.NewNodeServer("n", conn, rdscsi.WithStateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id := nodeTestVolumeID(t)
	dir := t.TempDir()
	staging, target := filepath.Join(dir, "staging"), filepath.Join(dir, "target")
	mcap := nodeTestMountCap("", nodeTestSNW)
	vctx := nodeTestContext(id)

	stage := func(r *csi.NodeStageVolumeRequest) error { _, err := ns.NodeStageVolume(ctx, r); return err }
	publish := func(r *csi.NodePublishVolumeRequest) error { _, err := ns.NodePublishVolume(ctx, r); return err }
	type argCase struct {
		name string
		err  error
		want codes.Code
	}
	cases := []argCase{
		{"stage no id", stage(&csi.NodeStageVolumeRequest{StagingTargetPath: staging, VolumeCapability: mcap, VolumeContext: vctx}), codes.InvalidArgument},
		{"stage no staging", stage(&csi.NodeStageVolumeRequest{VolumeId: id, VolumeCapability: mcap, VolumeContext: vctx}), codes.InvalidArgument},
		{"stage relative staging", stage(&csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: "rel", VolumeCapability: mcap, VolumeContext: vctx}), codes.InvalidArgument},
		{"stage no capability", stage(&csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeContext: vctx}), codes.InvalidArgument},
		{"stage no access mode", stage(&csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeContext: vctx,
			VolumeCapability: &csi.VolumeCapability{AccessType: mcap.AccessType}}), codes.InvalidArgument},
		{"stage btrfs", stage(&csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeContext: vctx,
			VolumeCapability: nodeTestMountCap("btrfs", nodeTestSNW)}), codes.InvalidArgument},
		{"stage multi-node fs", stage(&csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeContext: vctx,
			VolumeCapability: nodeTestMountCap("ext4", csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)}), codes.InvalidArgument},
		{"stage no address", stage(&csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: mcap,
			VolumeContext: map[string]string{rdscsi.ContextNQN: rdscsi.NQN(id)}}), codes.InvalidArgument},
		{"stage foreign nqn", stage(&csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: mcap,
			VolumeContext: vctx, PublishContext: map[string]string{rdscsi.ContextNQN: "nqn.2014-08.org.nvmexpress:boot"}}), codes.InvalidArgument},
		{"stage bad port", stage(&csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: mcap,
			VolumeContext: vctx, PublishContext: map[string]string{rdscsi.ParamNVMePort: "0"}}), codes.InvalidArgument},
		{"stage unknown id shape", stage(&csi.NodeStageVolumeRequest{VolumeId: "fake-vol-id-1", StagingTargetPath: staging, VolumeCapability: mcap, VolumeContext: vctx}), codes.NotFound},
		{"publish no id", publish(&csi.NodePublishVolumeRequest{TargetPath: target, StagingTargetPath: staging, VolumeCapability: mcap}), codes.InvalidArgument},
		{"publish no target", publish(&csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: mcap}), codes.InvalidArgument},
		{"publish no capability", publish(&csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, StagingTargetPath: staging}), codes.InvalidArgument},
		{"publish no staging", publish(&csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: mcap}), codes.InvalidArgument},
		{"publish unstaged", publish(&csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, StagingTargetPath: staging, VolumeCapability: mcap}), codes.FailedPrecondition},
	}
	_, err = ns.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{TargetPath: target})
	cases = append(cases, argCase{"unpublish no id", err, codes.InvalidArgument})
	_, err = ns.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id})
	cases = append(cases, argCase{"unpublish no target", err, codes.InvalidArgument})
	_, err = ns.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{StagingTargetPath: staging})
	cases = append(cases, argCase{"unstage no id", err, codes.InvalidArgument})
	_, err = ns.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id})
	cases = append(cases, argCase{"unstage no staging", err, codes.InvalidArgument})
	for _, r := range []*csi.NodeGetVolumeStatsRequest{{VolumePath: target}, {VolumeId: id}} {
		_, err := ns.NodeGetVolumeStats(ctx, r)
		cases = append(cases, argCase{"stats missing field", err, codes.InvalidArgument})
	}
	for _, p := range []string{"some/path", target} {
		_, err := ns.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: p})
		cases = append(cases, argCase{"stats unknown " + p, err, codes.NotFound})
		_, err = ns.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: id, VolumePath: p})
		cases = append(cases, argCase{"expand unknown " + p, err, codes.NotFound})
	}
	_, err = ns.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "fake-vol-id-2", VolumePath: "some/path"})
	cases = append(cases, argCase{"stats foreign id", err, codes.NotFound})
	_, err = ns.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumePath: target})
	cases = append(cases, argCase{"expand no id", err, codes.InvalidArgument})
	_, err = ns.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: id})
	cases = append(cases, argCase{"expand no path", err, codes.InvalidArgument})
	_, err = ns.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{})
	cases = append(cases, argCase{"health no id", err, codes.InvalidArgument})
	_, err = ns.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: id})
	cases = append(cases, argCase{"health unknown", err, codes.NotFound})

	for _, c := range cases {
		if got := status.Code(c.err); got != c.want {
			t.Errorf("%s: code %v (%v), want %v", c.name, got, c.err, c.want)
		}
	}
	// Validation failed before anything touched the connector.
	for _, c := range conn.Calls() {
		if strings.HasPrefix(c, "connect") {
			t.Errorf("connector called during validation: %q", conn.Calls())
		}
	}
	// Nothing was created at the staging or target path.
	for _, p := range []string{staging, target} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after failed calls: %v", p, err)
		}
	}
}

func TestNodeUnpublishAndUnstageAreIdempotent(t *testing.T) {
	conn := &nodeTestFakeConnector{}
	ns, err := rdscsi.NewNodeServer("n", conn, rdscsi.WithStateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id := nodeTestVolumeID(t)
	dir := t.TempDir()
	// Target path that does not exist, then one that exists unmounted.
	for _, target := range []string{filepath.Join(dir, "missing"), dir + "/empty"} {
		if strings.HasSuffix(target, "empty") {
			if err := os.Mkdir(target, 0o750); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 {
			if _, err := ns.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
				t.Fatalf("unpublish %s: %v", target, err)
			}
		}
		if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s not removed: %v", target, err)
		}
	}
	// A never-staged volume: unstage succeeds, and still disconnects by
	// the volume's NQN in case a connection was left behind.
	for range 2 {
		if _, err := ns.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: filepath.Join(dir, "staging")}); err != nil {
			t.Fatal(err)
		}
	}
	if n := slices.Index(conn.Calls(), "disconnect "+rdscsi.NQN(id)); n < 0 {
		t.Fatalf("no disconnect of %s: %q", rdscsi.NQN(id), conn.Calls())
	}
}

func TestNodeUnstageFailsWhenDisconnectFails(t *testing.T) {
	conn := &nodeTestFakeConnector{disconnectErr: errors.New("nvme disconnect: controller busy")}
	rec := &nodeTestRecorder{}
	ns, err := rdscsi.NewNodeServer("n", conn, rdscsi.WithStateDir(t.TempDir()), rdscsi.WithRecorder(rec))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ns.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: nodeTestVolumeID(t), StagingTargetPath: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "controller busy") {
		t.Fatalf("unstage = %v, want the disconnect error", err)
	}
	if rec.get("disconnect:error") != 1 {
		t.Fatalf("disconnect error not recorded: %v", rec.counts)
	}
}

func TestNodeConcurrentCallOnVolumeIsAborted(t *testing.T) {
	conn := &nodeTestFakeConnector{block: make(chan struct{}), entered: make(chan struct{})}
	ns, err := rdscsi.NewNodeServer("n", conn, rdscsi.WithStateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	id := nodeTestVolumeID(t)
	req := &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: t.TempDir(),
		VolumeCapability: nodeTestMountCap("", nodeTestSNW), VolumeContext: nodeTestContext(id)}
	done := make(chan error, 1)
	go func() { _, err := ns.NodeStageVolume(context.Background(), req); done <- err }()
	<-conn.entered // the first call holds the volume
	_, err = ns.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: req.StagingTargetPath})
	nodeTestCode(t, err, codes.Aborted)
	close(conn.block)
	if err := <-done; err == nil {
		t.Fatal("stage with a device-less connector succeeded")
	}
	// The volume is free again.
	if _, err := ns.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: req.StagingTargetPath}); err != nil {
		t.Fatal(err)
	}
}

// The real connector's errors reach the CO with the codes of the table
// in errors.go, and its default prefix admits the NQN of every volume.
func TestTCPConnectorErrorCodes(t *testing.T) {
	root := t.TempDir()
	var ran []string
	c := nvme.NewTCPConnector(
		nvme.WithSysfsRoot(filepath.Join(root, "sys")),
		nvme.WithDevRoot(filepath.Join(root, "dev")),
		nvme.WithRunner(func(_ context.Context, name string, args ...string) ([]byte, error) {
			ran = append(ran, name+" "+strings.Join(args, " "))
			return []byte("Failed to write to /dev/nvme-fabrics: Connection refused"), errors.New("exit status 1")
		}),
	)
	ctx := context.Background()
	id := nodeTestVolumeID(t)
	if _, err := c.Device(ctx, rdscsi.NQN(id)); !errors.Is(err, nvme.ErrNotConnected) || rdscsi.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Device: %v, want ErrNotConnected (FailedPrecondition)", err)
	}
	if err := c.Disconnect(ctx, "nqn.2014-08.org.nvmexpress:boot"); rdscsi.Code(err) != codes.InvalidArgument {
		t.Fatalf("Disconnect(foreign): %v, want InvalidArgument", err)
	}
	if err := c.Disconnect(ctx, rdscsi.NQN(id)); err != nil {
		t.Fatalf("Disconnect of an absent subsystem: %v", err)
	}
	_, err := c.Connect(ctx, nvme.Target{Address: "10.1.1.1", Port: 4420, NQN: rdscsi.NQN(id), CtrlLossTmo: -1})
	if err == nil || !strings.Contains(err.Error(), "Connection refused") {
		t.Fatalf("Connect: %v", err)
	}
	want := "nvme connect --transport tcp --traddr 10.1.1.1 --trsvcid 4420 --nqn " + rdscsi.NQN(id) + " --ctrl-loss-tmo -1"
	if !slices.Equal(ran, []string{want}) {
		t.Fatalf("ran %q, want %q", ran, want)
	}
	if err := c.Rescan(ctx, rdscsi.NQN(id)); !errors.Is(err, nvme.ErrNotConnected) || rdscsi.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Rescan: %v", err)
	}
	// A malformed target is refused before anything runs.
	ran = nil
	if _, err := c.Connect(ctx, nvme.Target{Address: "-oProxyCommand=sh", Port: 4420, NQN: rdscsi.NQN(id)}); !errors.Is(err, nvme.ErrInvalid) || rdscsi.Code(err) != codes.InvalidArgument {
		t.Fatalf("Connect(bad address): %v, want ErrInvalid (InvalidArgument)", err)
	}
	if len(ran) != 0 {
		t.Fatalf("ran %q for an invalid target", ran)
	}
}

// ---- tests with loop devices ----

func TestNodeLifecycle(t *testing.T) {
	for _, kind := range []string{"ext4", "xfs", "block"} {
		t.Run(kind, func(t *testing.T) { nodeTestLifecycle(t, kind) })
	}
}

func nodeTestLifecycle(t *testing.T, kind string) {
	e := nodeTestSetup(t)
	ctx := context.Background()
	size := int64(64 << 20)
	if kind == "xfs" {
		size = 512 << 20 // mkfs.xfs needs more than 300 MiB
	}
	id := e.createDisk(size)
	block := kind == "block"
	vc := nodeTestMountCap(kind, nodeTestSNW)
	if block {
		vc = nodeTestBlockCap(nodeTestSNW)
	}
	staging := filepath.Join(e.dir, "staging", id)
	target := filepath.Join(e.dir, "pods", "p1", "volume")
	e.must(os.MkdirAll(filepath.Dir(target), 0o750))

	// Stage twice: the second is a no-op.
	e.must(e.stage(e.ns, id, staging, vc))
	e.must(e.stage(e.ns, id, staging, vc))
	if !block {
		if n := nodeTestMountCount(t, staging); n != 1 {
			t.Fatalf("staging path mounted %d times, want 1", n)
		}
		if got := e.rec.get("format:ok"); got != 1 {
			t.Fatalf("format ok count %d, want 1", got)
		}
	} else if _, err := os.Stat(staging); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("block stage created %s: %v", staging, err)
	}
	dev, err := e.loop.Device(ctx, rdscsi.NQN(id))
	if err != nil {
		t.Fatal(err)
	}
	recFile := filepath.Join(e.state, id+".json")
	recText, err := os.ReadFile(recFile)
	if err != nil {
		t.Fatalf("no stage record: %v", err)
	}
	if !strings.Contains(string(recText), rdscsi.NQN(id)) || (!block && !strings.Contains(string(recText), `"fsUUID"`)) {
		t.Fatalf("stage record lacks identity: %s", recText)
	}

	// Publish twice: one mount.
	e.must(e.publish(e.ns, id, staging, target, vc, false))
	e.must(e.publish(e.ns, id, staging, target, vc, false))
	if n := nodeTestMountCount(t, target); n != 1 {
		t.Fatalf("target mounted %d times, want 1", n)
	}
	// Publishing over it with another read-only flag, access type or
	// access mode is incompatible.
	nodeTestCode(t, e.publish(e.ns, id, staging, target, vc, true), codes.AlreadyExists)
	other := nodeTestBlockCap(nodeTestSNW)
	if block {
		other = nodeTestMountCap("ext4", nodeTestSNW)
	}
	nodeTestCode(t, e.publish(e.ns, id, staging, target, other, false), codes.AlreadyExists)
	otherMode := proto.Clone(vc).(*csi.VolumeCapability)
	otherMode.AccessMode.Mode = csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER
	nodeTestCode(t, e.publish(e.ns, id, staging, target, otherMode, false), codes.AlreadyExists)
	if n := nodeTestMountCount(t, target); n != 1 {
		t.Fatalf("target mounted %d times after refused publishes", n)
	}

	// Write through the target, to find it again after a re-stage.
	payload := []byte("rds-csi node test " + id)
	if block {
		f, err := os.OpenFile(target, os.O_WRONLY, 0)
		e.must(err)
		_, err = f.WriteAt(payload, 1<<20)
		e.must(err)
		e.must(f.Sync())
		e.must(f.Close())
	} else {
		e.must(os.WriteFile(filepath.Join(target, "data"), payload, 0o600))
	}

	stats, err := e.ns.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target})
	e.must(err)
	nodeTestCheckStats(t, stats, block, size)

	h, err := e.ns.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: id})
	e.must(err)
	if h.GetVolumeHealth().GetVolumeId() != id || len(h.GetVolumeHealth().GetHealthStatuses()) != 0 {
		t.Fatalf("health of a healthy volume: %v", h)
	}

	// Grow the disk on the RDS, then on the node.
	newSize := size + 256<<20
	disk, err := e.client.Disk(ctx, id)
	e.must(err)
	if _, err := e.client.ResizeDisk(ctx, disk, newSize); err != nil {
		t.Fatal(err)
	}
	exp, err := e.ns.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: id, VolumePath: target,
		CapacityRange: &csi.CapacityRange{RequiredBytes: newSize}})
	if kind == "ext4" && !nodeTestHasCap(capSysResource) {
		// Online ext4 growth needs CAP_SYS_RESOURCE; without it the
		// failure must surface, not be hidden.
		if err == nil || !strings.Contains(err.Error(), "resize2fs") || e.rec.get("resize:error") != 1 {
			t.Fatalf("expand without CAP_SYS_RESOURCE: %v, metrics %v", err, e.rec.counts)
		}
		t.Log("no CAP_SYS_RESOURCE here: checked that ext4 growth fails visibly instead of growing it")
	} else {
		e.must(err)
		if exp.GetCapacityBytes() != newSize {
			t.Fatalf("expanded to %d, want %d", exp.GetCapacityBytes(), newSize)
		}
		stats, err = e.ns.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target})
		e.must(err)
		nodeTestCheckStats(t, stats, block, newSize)
		if !block && e.rec.get("resize:ok") != 1 {
			t.Fatalf("resize not recorded: %v", e.rec.counts)
		}
	}

	// Unpublish twice; the target is gone.
	e.must(e.unpublish(e.ns, id, target))
	e.must(e.unpublish(e.ns, id, target))
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("target left behind: %v", err)
	}
	// Unstage twice; device and record are gone.
	e.must(e.unstage(e.ns, id, staging))
	e.must(e.unstage(e.ns, id, staging))
	if _, err := e.loop.Device(ctx, rdscsi.NQN(id)); !errors.Is(err, nvme.ErrNotConnected) {
		t.Fatalf("device still attached after unstage: %v", err)
	}
	if _, err := os.Stat(recFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stage record left behind: %v", err)
	}
	if nodeTestMountCount(t, staging) != 0 {
		t.Fatal("staging path still mounted")
	}
	if b, err := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(dev), "loop", "backing_file")); err == nil &&
		strings.Contains(string(b), id) {
		t.Fatalf("%s still holds the volume", dev)
	}

	// Stage and publish again: same data, no second format.
	e.must(e.stage(e.ns, id, staging, vc))
	e.must(e.publish(e.ns, id, staging, target, vc, true))
	var got []byte
	if block {
		f, err := os.Open(target)
		e.must(err)
		got = make([]byte, len(payload))
		_, err = f.ReadAt(got, 1<<20)
		e.must(err)
		e.must(f.Close())
	} else {
		got, err = os.ReadFile(filepath.Join(target, "data"))
		e.must(err)
		// Read-only publish really is read-only.
		if err := os.WriteFile(filepath.Join(target, "other"), nil, 0o600); err == nil {
			t.Fatal("wrote to a read-only publish")
		}
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("data after re-stage %q, want %q", got, payload)
	}
	if !block && e.rec.get("format:ok") != 1 {
		t.Fatalf("volume formatted again: %v", e.rec.counts)
	}
	e.must(e.unpublish(e.ns, id, target))
	e.must(e.unstage(e.ns, id, staging))
	if e.rec.get("connect:ok") < 2 || e.rec.get("disconnect:ok") < 2 || e.rec.get("mount:error")+e.rec.get("unmount:error") != 0 {
		t.Fatalf("metrics %v", e.rec.counts)
	}
}

func nodeTestCheckStats(t *testing.T, s *csi.NodeGetVolumeStatsResponse, block bool, size int64) {
	t.Helper()
	u := s.GetUsage()
	if block {
		if len(u) != 1 || u[0].GetUnit() != csi.VolumeUsage_BYTES || u[0].GetTotal() != size {
			t.Fatalf("block stats %v, want total %d", u, size)
		}
		return
	}
	if len(u) != 2 {
		t.Fatalf("stats %v", u)
	}
	b, in := u[0], u[1]
	if b.GetUnit() != csi.VolumeUsage_BYTES || in.GetUnit() != csi.VolumeUsage_INODES {
		t.Fatalf("units %v", u)
	}
	// File system overhead: total is below the device size but close.
	if b.GetTotal() <= 0 || b.GetTotal() > size || b.GetTotal() < size*7/10 ||
		b.GetUsed() <= 0 || b.GetAvailable() <= 0 || b.GetUsed()+b.GetAvailable() > b.GetTotal() {
		t.Fatalf("byte stats %v for a %d-byte device", b, size)
	}
	if in.GetTotal() <= 0 || in.GetUsed() <= 0 || in.GetUsed()+in.GetAvailable() != in.GetTotal() {
		t.Fatalf("inode stats %v", in)
	}
}

func TestNodeStageNeverFormatsOnInconclusiveProbe(t *testing.T) {
	e := nodeTestSetup(t)
	id := e.createDisk(64 << 20)
	vc := nodeTestMountCap("ext4", nodeTestSNW)
	staging := filepath.Join(e.dir, "staging")
	target := filepath.Join(e.dir, "target")

	// A volume with data on it.
	e.must(e.stage(e.ns, id, staging, vc))
	e.must(e.publish(e.ns, id, staging, target, vc, false))
	e.must(os.WriteFile(filepath.Join(target, "precious"), []byte("keep me"), 0o600))
	e.must(e.unpublish(e.ns, id, target))
	e.must(e.unstage(e.ns, id, staging))
	mkfsBefore := e.exec.ran("mkfs.")
	if mkfsBefore != 1 {
		t.Fatalf("mkfs ran %d times for one volume", mkfsBefore)
	}

	for _, c := range []struct {
		name string
		exit int32
	}{
		{"device not ready (exit 1)", 1},
		{"blkid wrongly reports no signature (exit 2)", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.exec.blkidExit.Store(c.exit)
			err := e.stage(e.ns, id, staging, vc)
			e.exec.blkidExit.Store(0)
			nodeTestCode(t, err, codes.Unavailable)
			if n := e.exec.ran("mkfs."); n != mkfsBefore {
				t.Fatalf("mkfs ran during a failed probe (%d runs)", n-mkfsBefore)
			}
			if _, err := os.Lstat(staging); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("failed stage left %s behind: %v", staging, err)
			}
			if _, err := os.Stat(filepath.Join(e.state, id+".json")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("failed first stage left a record: %v", err)
			}
		})
	}

	// The probe works again: the data is intact.
	e.must(e.stage(e.ns, id, staging, vc))
	e.must(e.publish(e.ns, id, staging, target, vc, false))
	got, err := os.ReadFile(filepath.Join(target, "precious"))
	if err != nil || string(got) != "keep me" {
		t.Fatalf("data after flaky probes: %q, %v", got, err)
	}
	if n := e.exec.ran("mkfs."); n != mkfsBefore {
		t.Fatalf("volume with data was formatted (%d mkfs runs)", n)
	}
	e.must(e.unpublish(e.ns, id, target))
	e.must(e.unstage(e.ns, id, staging))
}

func TestNodeRefusesSwappedDevice(t *testing.T) {
	e := nodeTestSetup(t)
	a, b := e.createDisk(64<<20), e.createDisk(64<<20)
	swap := &nodeTestSwapConnector{Connector: e.loop, swap: map[string]string{}}
	ns := e.newServer(swap)

	for _, kind := range []string{"ext4", "block"} {
		t.Run(kind, func(t *testing.T) {
			vc := nodeTestMountCap(kind, nodeTestSNW)
			if kind == "block" {
				vc = nodeTestBlockCap(nodeTestSNW)
			}
			sa, sb := filepath.Join(e.dir, kind, "sa"), filepath.Join(e.dir, kind, "sb")
			ta, ta2 := filepath.Join(e.dir, kind, "ta"), filepath.Join(e.dir, kind, "ta2")
			e.must(os.MkdirAll(filepath.Join(e.dir, kind), 0o750))
			// Both volumes are staged normally, so B holds its own file
			// system with another UUID.
			e.must(e.stage(ns, a, sa, vc))
			e.must(e.stage(ns, b, sb, vc))
			e.must(e.publish(ns, a, sa, ta, vc, false))

			// Now A's NQN resolves to B's device.
			swap.mu.Lock()
			swap.swap[rdscsi.NQN(a)] = rdscsi.NQN(b)
			swap.mu.Unlock()
			nodeTestCode(t, e.stage(ns, a, sa, vc), codes.FailedPrecondition)
			nodeTestCode(t, e.publish(ns, a, sa, ta2, vc, false), codes.FailedPrecondition)
			if _, err := os.Lstat(ta2); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("refused publish created %s", ta2)
			}
			h, err := ns.NodeGetVolumeHealth(context.Background(), &csi.NodeGetVolumeHealthRequest{VolumeId: a})
			e.must(err)
			if st := h.GetVolumeHealth().GetHealthStatuses(); len(st) != 1 || st[0].GetReason() != "DeviceMismatch" {
				t.Fatalf("health with a swapped device: %v", st)
			}

			swap.mu.Lock()
			delete(swap.swap, rdscsi.NQN(a))
			swap.mu.Unlock()
			e.must(e.stage(ns, a, sa, vc))
			e.must(e.unpublish(ns, a, ta))
			e.must(e.unstage(ns, a, sa))
			e.must(e.unstage(ns, b, sb))
		})
	}
}

// nodeTestMountsOf is the part of the mount table that concerns dir and
// the loop device dev: mounts below dir, mounts of the device's file
// system, and bind mounts of its device node.
func nodeTestMountsOf(t *testing.T, dir, dev string) []string {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(dev)
	var st struct{ major, minor uint32 }
	if b, err := os.ReadFile(filepath.Join("/sys/class/block", name, "dev")); err == nil {
		_, _ = fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &st.major, &st.minor)
	}
	mm := fmt.Sprintf(" %d:%d ", st.major, st.minor)
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if strings.HasPrefix(f[4], dir+"/") || f[4] == dir || strings.Contains(line, mm) || f[3] == "/"+name {
			out = append(out, line)
		}
	}
	return out
}

func TestNodeBlockPublishCyclesLeaveMountTableUnchanged(t *testing.T) {
	e := nodeTestSetup(t)
	ctx := context.Background()
	id := e.createDisk(16 << 20)
	vc := nodeTestBlockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER)
	staging := filepath.Join(e.dir, "staging")
	e.must(e.stage(e.ns, id, staging, vc))
	dev, err := e.loop.Device(ctx, rdscsi.NQN(id))
	e.must(err)
	before := nodeTestMountsOf(t, e.dir, dev)

	const cycles = 200
	for i := range cycles {
		target := filepath.Join(e.dir, "pods", fmt.Sprintf("p%d", i%3), "dev")
		e.must(os.MkdirAll(filepath.Dir(target), 0o750))
		ro := i%2 == 1
		e.must(e.publish(e.ns, id, staging, target, vc, ro))
		if n := nodeTestMountCount(t, target); n != 1 {
			t.Fatalf("cycle %d: %d mounts at the target", i, n)
		}
		if i%50 == 0 {
			// A retried publish must not stack a second mount.
			e.must(e.publish(e.ns, id, staging, target, vc, ro))
			if n := nodeTestMountCount(t, target); n != 1 {
				t.Fatalf("cycle %d: retried publish left %d mounts", i, n)
			}
		}
		e.must(e.unpublish(e.ns, id, target))
	}
	after := nodeTestMountsOf(t, e.dir, dev)
	if !slices.Equal(before, after) {
		t.Fatalf("mount table changed after %d cycles:\nbefore %q\nafter  %q", cycles, before, after)
	}
	e.must(e.unstage(e.ns, id, staging))
}

func TestNodeSingleWriterAndMultiWriter(t *testing.T) {
	e := nodeTestSetup(t)
	id := e.createDisk(16 << 20)
	staging := filepath.Join(e.dir, "staging")
	t1, t2 := filepath.Join(e.dir, "t1"), filepath.Join(e.dir, "t2")

	sw := nodeTestBlockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)
	e.must(e.stage(e.ns, id, staging, sw))
	e.must(e.publish(e.ns, id, staging, t1, sw, false))
	nodeTestCode(t, e.publish(e.ns, id, staging, t2, sw, false), codes.FailedPrecondition)
	e.must(e.unpublish(e.ns, id, t1))
	e.must(e.publish(e.ns, id, staging, t2, sw, false))
	e.must(e.unpublish(e.ns, id, t2))

	mw := nodeTestBlockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER)
	e.must(e.publish(e.ns, id, staging, t1, mw, false))
	e.must(e.publish(e.ns, id, staging, t2, mw, false))
	// Unstage is refused while the volume is still published.
	nodeTestCode(t, e.unstage(e.ns, id, staging), codes.FailedPrecondition)
	e.must(e.unpublish(e.ns, id, t1))
	e.must(e.unpublish(e.ns, id, t2))
	e.must(e.unstage(e.ns, id, staging))
}

func TestNodeHealthAndStaleMounts(t *testing.T) {
	e := nodeTestSetup(t)
	ctx := context.Background()
	id := e.createDisk(64 << 20)
	vc := nodeTestMountCap("ext4", nodeTestSNW)
	staging := filepath.Join(e.dir, "staging")
	target := filepath.Join(e.dir, "target")
	e.must(e.stage(e.ns, id, staging, vc))
	e.must(e.publish(e.ns, id, staging, target, vc, false))

	// Someone unmounts the volume behind the driver's back.
	for _, p := range []string{target, staging} {
		if out, err := exec.Command("umount", p).CombinedOutput(); err != nil {
			t.Fatalf("umount %s: %v %s", p, err, out)
		}
	}
	stale := e.rec.get("stale")
	h, err := e.ns.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: id})
	e.must(err)
	st := h.GetVolumeHealth().GetHealthStatuses()
	if len(st) != 1 || st[0].GetStatus() != csi.VolumeHealthErrorType_INACCESSIBLE || st[0].GetReason() != "NotMounted" ||
		!strings.Contains(st[0].GetMessage(), staging) || !strings.Contains(st[0].GetMessage(), target) {
		t.Fatalf("health of an unmounted volume: %v", st)
	}
	if e.rec.get("stale") <= stale {
		t.Fatal("stale mount not reported")
	}
	_, err = e.ns.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target})
	nodeTestCode(t, err, codes.NotFound)
	// Publishing over an unmounted staging path is refused.
	nodeTestCode(t, e.publish(e.ns, id, staging, filepath.Join(e.dir, "t2"), vc, false), codes.FailedPrecondition)

	// A repeated stage repairs it.
	e.must(e.stage(e.ns, id, staging, vc))
	e.must(e.publish(e.ns, id, staging, target, vc, false))
	h, err = e.ns.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: id})
	e.must(err)
	if st := h.GetVolumeHealth().GetHealthStatuses(); len(st) != 0 {
		t.Fatalf("health after repair: %v", st)
	}

	// The device disappears.
	e.must(e.unpublish(e.ns, id, target))
	if out, err := exec.Command("umount", staging).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}
	e.must(e.loop.Disconnect(ctx, rdscsi.NQN(id)))
	h, err = e.ns.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: id})
	e.must(err)
	if st := h.GetVolumeHealth().GetHealthStatuses(); len(st) != 1 || st[0].GetReason() != "DeviceGone" {
		t.Fatalf("health without a device: %v", st)
	}
	e.must(e.unstage(e.ns, id, staging))
}

func TestNodeUnstageWaitsForOtherUsers(t *testing.T) {
	e := nodeTestSetup(t)
	disconnecting := make(chan struct{})
	ns := e.newServer(nodeTestDisconnectHook{Connector: e.loop, hook: sync.OnceFunc(func() { close(disconnecting) })},
		rdscsi.WithDeviceReleaseTimeout(300*time.Millisecond))
	ctx := context.Background()
	id := e.createDisk(16 << 20)
	vc := nodeTestBlockCap(nodeTestSNW)
	staging := filepath.Join(e.dir, "staging")
	e.must(e.stage(ns, id, staging, vc))
	dev, err := e.loop.Device(ctx, rdscsi.NQN(id))
	e.must(err)

	// Another process holds the device open.
	cmd := exec.Command("sh", "-c", "exec 3<"+dev+"; echo ready; exec sleep 60")
	out, err := cmd.StdoutPipe()
	e.must(err)
	e.must(cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil {
		t.Fatal(err)
	}
	err = e.unstage(ns, id, staging)
	nodeTestCode(t, err, codes.FailedPrecondition)
	if !strings.Contains(err.Error(), fmt.Sprintf("pid %d", cmd.Process.Pid)) {
		t.Fatalf("error does not name the holder: %v", err)
	}
	if _, err := e.loop.Device(ctx, rdscsi.NQN(id)); err != nil {
		t.Fatalf("device was disconnected while in use: %v", err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()

	// Our own descriptor does not count as a user: unstage goes on to
	// disconnect while we hold the device, and completes once we let go.
	f, err := os.Open(dev)
	e.must(err)
	go func() {
		<-disconnecting
		_ = f.Close()
	}()
	e.must(e.unstage(ns, id, staging))
	if _, err := e.loop.Device(ctx, rdscsi.NQN(id)); !errors.Is(err, nvme.ErrNotConnected) {
		t.Fatalf("device still attached: %v", err)
	}
}

// ExampleNewNodeServer builds the node service of a test cluster: devices
// come from loop devices over the fake RDS instead of NVMe/TCP.
func ExampleNewNodeServer() {
	srv, err := rdstest.NewServer()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	conn := rdscsitest.NewLoopConnector(srv)
	defer conn.Close()
	state, err := os.MkdirTemp("", "rds-csi-node")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(state)

	ns, err := rdscsi.NewNodeServer("worker-1", conn,
		rdscsi.WithStateDir(state),
		rdscsi.WithMaxVolumesPerNode(32),
		rdscsi.WithTopology(map[string]string{"topology.rds.csi.srvlab.io/node": "worker-1"}))
	if err != nil {
		fmt.Println(err)
		return
	}
	g := grpc.NewServer()
	ns.Register(g)

	info, _ := ns.NodeGetInfo(context.Background(), &csi.NodeGetInfoRequest{})
	fmt.Println(info.GetNodeId(), info.GetMaxVolumesPerNode(), info.GetAccessibleTopology().GetSegments())
	caps, _ := ns.NodeGetCapabilities(context.Background(), &csi.NodeGetCapabilitiesRequest{})
	for _, c := range caps.GetCapabilities() {
		fmt.Println(c.GetRpc().GetType())
	}
	// Output:
	// worker-1 32 map[topology.rds.csi.srvlab.io/node:worker-1]
	// STAGE_UNSTAGE_VOLUME
	// GET_VOLUME_STATS
	// EXPAND_VOLUME
	// SINGLE_NODE_MULTI_WRITER
	// GET_VOLUME_HEALTH
}

// nodeTestTargetConnector records the targets it is asked to connect and
// has no devices.
type nodeTestTargetConnector struct {
	nodeTestFakeConnector
	last *nvme.Target
}

func (c *nodeTestTargetConnector) Connect(ctx context.Context, t nvme.Target) (string, error) {
	c.last = &t
	return c.nodeTestFakeConnector.Connect(ctx, t)
}

// FuzzNodeStageRequest feeds CO-controlled context values and capability
// fields to NodeStageVolume: they are refused as InvalidArgument or reach
// the connector as a well-formed target of this very volume.
func FuzzNodeStageRequest(f *testing.F) {
	f.Add("", "10.0.0.5", "4420", "-1", "5", "15", "ext4", "noatime")
	f.Add("nqn.2000-02.com.mikrotik:pvc-other", "10.0.0.5", "4420", "", "", "", "", "")
	f.Add("", "-oProxyCommand=sh", "4420", "", "", "", "xfs", "")
	f.Add("", "rds.example.net", "99999", "-2", "0", "x", "btrfs", "bind")
	f.Add("", "10.0.0.5", "", "", "", "", "ext4", "rw\nro")
	conn := &nodeTestTargetConnector{}
	ns, err := rdscsi.NewNodeServer("n", conn, rdscsi.WithStateDir(f.TempDir()))
	if err != nil {
		f.Fatal(err)
	}
	id := rdscsi.VolumeIDForName("fuzz")
	staging := f.TempDir()
	f.Fuzz(func(t *testing.T, nqn, addr, port, loss, delay, keep, fsType, flag string) {
		conn.last = nil
		vctx := map[string]string{
			rdscsi.ContextNQN: nqn, rdscsi.ParamNVMeAddress: addr, rdscsi.ParamNVMePort: port,
			rdscsi.ParamCtrlLossTmo: loss, rdscsi.ParamReconnectDelay: delay, rdscsi.ParamKeepAliveTmo: keep,
		}
		vc := nodeTestMountCap(fsType, nodeTestSNW)
		if flag != "" {
			vc.GetMount().MountFlags = []string{flag}
		}
		_, err := ns.NodeStageVolume(context.Background(), &csi.NodeStageVolumeRequest{
			VolumeId: id, StagingTargetPath: staging, VolumeCapability: vc, VolumeContext: vctx,
		})
		code := status.Code(err)
		if code != codes.InvalidArgument && code != codes.Internal {
			t.Fatalf("code %v: %v", code, err)
		}
		tg := conn.last
		if tg == nil {
			if code != codes.InvalidArgument {
				t.Fatalf("failed before connecting with %v", err)
			}
			return
		}
		if tg.NQN != rdscsi.NQN(id) || tg.Port < 1 || tg.Port > 65535 || tg.Address == "" ||
			strings.HasPrefix(tg.Address, "-") || strings.ContainsAny(tg.Address, " \t\n\x00,=") ||
			tg.CtrlLossTmo < -1 || tg.ReconnectDelay < 0 || tg.KeepAliveTmo < 0 {
			t.Fatalf("malformed target reached the connector: %+v", *tg)
		}
	})
}
