package sanitytest

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
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
		name     string
		reports  []types.SpecReport
		problems []string // substrings, one per problem, in order
	}{
		{"clean", []types.SpecReport{passed, modify, health}, nil},
		{"unlisted skip", []types.SpecReport{passed, modify, health, spec(types.SpecStateSkipped, "Controller Service", "snapshots")},
			[]string{"unexpected skip: Controller Service snapshots: why"}},
		{"listed skip gone", []types.SpecReport{passed, modify}, []string{`listed skip "NodeGetStorageHealth" did not happen`}},
		{"failure", []types.SpecReport{modify, health, spec(types.SpecStateFailed, "Controller Service", "breaks")},
			[]string{"failed: Controller Service breaks\nwhy"}},
		{"known pending", []types.SpecReport{modify, health, spec(types.SpecStatePending, "ListVolumes", knownPending)}, nil},
		{"other pending", []types.SpecReport{modify, health, spec(types.SpecStatePending, "ListVolumes", "later")},
			[]string{"pending spec: ListVolumes later"}},
		// Node specs skipped for want of devices are no excuse here:
		// the node part is skipped as a whole instead (see Split).
		{"node skip not excused", []types.SpecReport{modify, health, spec(types.SpecStateSkipped, "Node Service", "stages")},
			[]string{"unexpected skip: Node Service stages"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := Account(tc.reports, expected)
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

// sanityRun is a run in which every expected skip happens once, in the
// part it belongs to, beside a passed spec of each part; the Describe
// text of a configuration prefixes every spec, as in the real tests.
func sanityRun() (ctrlSpecs, nodeSpecs []types.SpecReport) {
	for k := range controllerSkips {
		ctrlSpecs = append(ctrlSpecs, spec(types.SpecStateSkipped, "[mount-xfs]", "Controller Service", k))
	}
	for k := range nodeSkips {
		nodeSpecs = append(nodeSpecs, spec(types.SpecStateSkipped, "[mount-xfs]", nodeService, k))
	}
	ctrlSpecs = append(ctrlSpecs, spec(types.SpecStatePassed, "[mount-xfs]", "Identity Service", "GetPluginInfo"))
	nodeSpecs = append(nodeSpecs, spec(types.SpecStatePassed, "[mount-xfs]", nodeService, "NodeStageVolume", "stages"))
	return ctrlSpecs, nodeSpecs
}

// Split puts every spec in one part, and each expected skip in the
// part that can produce it; the maps are the caller's.
func TestSplit(t *testing.T) {
	ctrlSpecs, nodeSpecs := sanityRun()
	ctrl, node := Split(append(slices.Clone(nodeSpecs[:1]), append(slices.Clone(ctrlSpecs), nodeSpecs[1:]...)...))
	if !slices.EqualFunc(ctrl.Reports, ctrlSpecs, sameSpec) {
		t.Errorf("controller part %v, want %v", texts(ctrl.Reports), texts(ctrlSpecs))
	}
	if !slices.EqualFunc(node.Reports, nodeSpecs, sameSpec) {
		t.Errorf("node part %v, want %v", texts(node.Reports), texts(nodeSpecs))
	}
	if !maps.Equal(ctrl.Expected, controllerSkips) || !maps.Equal(node.Expected, nodeSkips) {
		t.Errorf("expected skips: controller %v, node %v", ctrl.Expected, node.Expected)
	}
	if len(node.Expected) == 0 {
		t.Error("no expected skip concerns the node")
	}
	for k, why := range ctrl.Expected {
		if strings.TrimSpace(why) == "" {
			t.Errorf("skip %q has no reason", k)
		}
		if _, ok := node.Expected[k]; ok {
			t.Errorf("skip %q expected in both parts", k)
		}
	}
	for k, why := range node.Expected {
		if strings.TrimSpace(why) == "" {
			t.Errorf("skip %q has no reason", k)
		}
	}
	delete(ctrl.Expected, "GroupController Service")
	if _, ok := controllerSkips["GroupController Service"]; !ok {
		t.Error("Split returned the package's own map")
	}
}

func sameSpec(a, b types.SpecReport) bool { return a.FullText() == b.FullText() && a.State == b.State }

func texts(rs []types.SpecReport) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.FullText())
	}
	return out
}

// errorLog is a testing.TB that keeps what Error reports.
type errorLog struct {
	testing.TB
	errs []string
}

func (l *errorLog) Helper()                   {}
func (l *errorLog) Logf(string, ...any)       {}
func (l *errorLog) Error(args ...any)         { l.errs = append(l.errs, fmt.Sprint(args...)) }
func (l *errorLog) Errorf(f string, a ...any) { l.errs = append(l.errs, fmt.Sprintf(f, a...)) }

// Each part of a run is judged against its own share of the expected
// skips: a skip nobody listed fails it, and so does a listed skip that no
// longer happens, in the controller part as in the node part; a part
// that ran nothing fails.
func TestPartCheck(t *testing.T) {
	ctrl, node := Split(slices.Concat(sanityRun()))
	if len(ctrl.Reports) < 2 || len(node.Reports) < 2 {
		t.Fatalf("split into %d and %d specs, want an expected skip and a passed spec in each", len(ctrl.Reports), len(node.Reports))
	}
	unlisted := func(p Part, container string) Part {
		p.Reports = append(slices.Clone(p.Reports), spec(types.SpecStateSkipped, "[block]", container, "something new"))
		return p
	}
	gone := func(p Part) Part {
		p.Reports = p.Reports[1:] // the first is an expected skip
		return p
	}
	failed := func(p Part, container string) Part {
		p.Reports = append(slices.Clone(p.Reports), spec(types.SpecStateFailed, "[block]", container, "breaks"))
		return p
	}
	cases := []struct {
		name string
		part Part
		want string // "" for clean
	}{
		{"controller clean", ctrl, ""},
		{"node clean", node, ""},
		{"controller unlisted skip", unlisted(ctrl, "Controller Service"), "unexpected skip"},
		{"node unlisted skip", unlisted(node, nodeService), "unexpected skip"},
		{"controller listed skip gone", gone(ctrl), "did not happen"},
		{"node listed skip gone", gone(node), "did not happen"},
		{"controller failure", failed(ctrl, "Controller Service"), "failed: [block] Controller Service breaks"},
		{"node failure", failed(node, nodeService), "failed: [block] Node Service breaks"},
		// A node skip is not a controller one, and the reverse.
		{"node skip in controller part", Part{Reports: slices.Concat(ctrl.Reports, node.Reports), Expected: ctrl.Expected}, "unexpected skip: [mount-xfs] Node Service NodeGetStorageHealth"},
		{"nothing ran", Part{Expected: map[string]string{}}, "ran no spec"},
	}
	for _, tc := range cases {
		l := &errorLog{TB: t}
		a := tc.part.Check(l)
		switch {
		case tc.want == "" && len(l.errs) != 0:
			t.Errorf("%s: errors %q, want none", tc.name, l.errs)
		case tc.want != "" && !slices.ContainsFunc(l.errs, func(e string) bool { return strings.Contains(e, tc.want) }):
			t.Errorf("%s: errors %q, want one containing %q", tc.name, l.errs, tc.want)
		}
		if len(a.Problems) > len(l.errs) {
			t.Errorf("%s: %d problems, only %d reported", tc.name, len(a.Problems), len(l.errs))
		}
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
