package sanitytest

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/onsi/ginkgo/v2/types"
	"google.golang.org/grpc"

	"github.com/srvlab/rds-csi/rdscsi"
)

func spec(state types.SpecState, texts ...string) types.SpecReport {
	return types.SpecReport{
		ContainerHierarchyTexts: texts[:len(texts)-1],
		LeafNodeText:            texts[len(texts)-1],
		State:                   state,
		Failure:                 types.Failure{Message: "why"},
	}
}

func TestAccount(t *testing.T) {
	expected := map[string]string{"ModifyVolume": "r1", "NodeGetStorageHealth": "r2"}
	passed := spec(types.SpecStatePassed, "Controller Service", "works")
	modify := spec(types.SpecStateSkipped, "ModifyVolume", "modifies")
	health := spec(types.SpecStateSkipped, "Node Service", "NodeGetStorageHealth", "reports health")
	cases := []struct {
		name        string
		reports     []types.SpecReport
		nodeSkipped bool
		problems    []string // substrings, one per problem, in order
	}{
		{"clean", []types.SpecReport{passed, modify, health}, false, nil},
		{"unlisted skip", []types.SpecReport{passed, modify, health, spec(types.SpecStateSkipped, "Controller Service", "snapshots")},
			false, []string{"unexpected skip: Controller Service snapshots: why"}},
		{"listed skip gone", []types.SpecReport{passed, modify}, false, []string{`listed skip "NodeGetStorageHealth" did not happen`}},
		{"failure", []types.SpecReport{modify, health, spec(types.SpecStateFailed, "Controller Service", "breaks")},
			false, []string{"failed: Controller Service breaks\nwhy"}},
		{"known pending", []types.SpecReport{modify, health, spec(types.SpecStatePending, "ListVolumes", knownPending)}, false, nil},
		{"other pending", []types.SpecReport{modify, health, spec(types.SpecStatePending, "ListVolumes", "later")},
			false, []string{"pending spec: ListVolumes later"}},
		// Node specs skipped for want of devices: the node list entry
		// is not expected (the caller passes ExpectedSkips(false)).
		{"node skipped", []types.SpecReport{modify, spec(types.SpecStateSkipped, "Node Service", "stages")}, true,
			[]string{`listed skip "NodeGetStorageHealth" did not happen`}},
		{"node skip not excused", []types.SpecReport{modify, health, spec(types.SpecStateSkipped, "Node Service", "stages")}, false,
			[]string{"unexpected skip: Node Service stages"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := Account(tc.reports, expected, tc.nodeSkipped)
			if len(a.Problems) != len(tc.problems) {
				t.Fatalf("problems %q, want %d like %q", a.Problems, len(tc.problems), tc.problems)
			}
			for i, want := range tc.problems {
				if !strings.Contains(a.Problems[i], want) {
					t.Errorf("problem %d = %q, want it to contain %q", i, a.Problems[i], want)
				}
			}
			if n := a.States["passed"] + a.States["skipped"] + a.States["pending"] + a.States["failed"]; n != len(tc.reports) {
				t.Errorf("states %v count %d specs, want %d", a.States, n, len(tc.reports))
			}
		})
	}
}

func TestExpectedSkips(t *testing.T) {
	ctrl, all := ExpectedSkips(false), ExpectedSkips(true)
	if _, ok := ctrl["NodeGetStorageHealth"]; ok {
		t.Error("node skips listed without the node")
	}
	if len(all) != len(ctrl)+len(nodeSkips) {
		t.Errorf("with the node: %d entries, want %d", len(all), len(ctrl)+len(nodeSkips))
	}
	for k, why := range all {
		if strings.TrimSpace(why) == "" {
			t.Errorf("skip %q has no reason", k)
		}
	}
	delete(ctrl, "GroupController Service")
	if _, ok := ExpectedSkips(false)["GroupController Service"]; !ok {
		t.Error("ExpectedSkips returned the package's own map")
	}
}

func TestIDGen(t *testing.T) {
	g := IDGen{}
	uuidRE := `[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`
	a, b := g.GenerateUniqueValidVolumeID(), g.GenerateUniqueValidVolumeID()
	if a == b {
		t.Fatalf("two volume IDs alike: %s", a)
	}
	for _, id := range []string{a, b} {
		if !regexp.MustCompile(`^pvc-`+uuidRE+`$`).MatchString(id) || !rdscsi.IsVolumeID(id) {
			t.Errorf("volume ID %q is not of the driver's shape", id)
		}
	}
	if rdscsi.IsVolumeID(g.GenerateInvalidVolumeID()) {
		t.Errorf("invalid volume ID %q is valid", g.GenerateInvalidVolumeID())
	}
	if n := g.GenerateUniqueValidNodeID(); !regexp.MustCompile(`^node-` + uuidRE + `$`).MatchString(n) {
		t.Errorf("node ID %q", n)
	}
}

func TestNewConfig(t *testing.T) {
	c := NewConfig("unix:///tmp/x.sock", "/tmp/run")
	if c.Address != "unix:///tmp/x.sock" || c.TargetPath != "/tmp/run-target" || c.StagingPath != "/tmp/run-staging" {
		t.Errorf("address or paths: %+v", c)
	}
	if c.IdempotentCount != 2 || !c.TestNodeVolumeAttachLimit || c.TestSnapshotParameters["volumePath"] == "" {
		t.Errorf("settings: %+v", c)
	}
	if _, ok := c.IDGen.(IDGen); !ok {
		t.Errorf("IDGen %T", c.IDGen)
	}
}

func mountCap(fs string) *csi.VolumeCapability {
	return &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fs}}}
}

// The interceptor forces the filesystem into nested capabilities, keeps
// one that is set, and counts only stage calls of its own access.
func TestAccessInterceptor(t *testing.T) {
	a := &Access{FsType: "xfs"}
	var seen []any
	invoke := func(_ context.Context, _ string, req, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		seen = append(seen, req)
		return nil
	}
	create := &csi.CreateVolumeRequest{VolumeCapabilities: []*csi.VolumeCapability{mountCap(""), mountCap("ext4")}}
	stage := &csi.NodeStageVolumeRequest{VolumeCapability: mountCap("")}
	block := &csi.NodeStageVolumeRequest{VolumeCapability: &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}}}
	for _, req := range []any{create, stage, block} {
		if err := a.intercept(context.Background(), "/m", req, nil, nil, invoke); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != 3 {
		t.Fatalf("invoker called %d times, want 3", len(seen))
	}
	if got := create.GetVolumeCapabilities()[0].GetMount().GetFsType(); got != "xfs" {
		t.Errorf("empty fs_type became %q, want xfs", got)
	}
	if got := create.GetVolumeCapabilities()[1].GetMount().GetFsType(); got != "ext4" {
		t.Errorf("explicit fs_type became %q, want it kept", got)
	}
	if a.Staged() != 1 {
		t.Errorf("staged %d, want 1 (the mount stage only)", a.Staged())
	}
	b := &Access{Block: true}
	b.intercept(context.Background(), "/m", block, nil, nil, invoke)
	b.intercept(context.Background(), "/m", &csi.NodeStageVolumeRequest{VolumeCapability: mountCap("")}, nil, nil, invoke)
	if b.Staged() != 1 || b.String() != "block access" || a.String() != "xfs" || (&Access{}).String() != "default filesystem (ext4)" {
		t.Errorf("block staged %d, names %q %q", b.Staged(), b, a)
	}
}

func TestNodeUnavailable(t *testing.T) {
	got := NodeUnavailable("no-such-tool-for-sanitytest")
	if got == "" {
		t.Fatal("a missing tool was not reported")
	}
	if NodeUnavailable() == "" && got != "no-such-tool-for-sanitytest not installed" {
		t.Errorf("reason %q, want the missing tool named", got)
	}
}
