package rdscsi_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/srvlab/rds-csi/metrics"
	"github.com/srvlab/rds-csi/rdscsi"
)

const optionsTestKey = "topology.rds.csi.srvlab.io/zone"

// TestServerOptionsConfigureBoth: one value of each shared option
// configures a ControllerServer and a NodeServer, and the map given to
// WithTopology is copied.
func TestServerOptionsConfigureBoth(t *testing.T) {
	segs := map[string]string{optionsTestKey: "a"}
	shared := []rdscsi.ServerOption{
		rdscsi.WithLogger(slog.New(slog.DiscardHandler)),
		rdscsi.WithRecorder(metrics.Noop{}),
		rdscsi.WithTopology(segs),
		rdscsi.WithMaxVolumesPerNode(5),
	}
	var copts []rdscsi.ControllerOption
	nopts := []rdscsi.NodeOption{rdscsi.WithStateDir(t.TempDir())}
	for _, o := range shared {
		copts = append(copts, o)
		nopts = append(nopts, o)
	}
	e := newCtrlTestEnv(t, ctrlTestConfig{ctrlOpts: copts})
	ns, err := rdscsi.NewNodeServer("worker-1", &nodeTestFakeConnector{}, nopts...)
	if err != nil {
		t.Fatal(err)
	}
	segs[optionsTestKey] = "changed-by-caller"

	ctx := context.Background()
	info, err := ns.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetMaxVolumesPerNode() != 5 || info.GetAccessibleTopology().GetSegments()[optionsTestKey] != "a" {
		t.Errorf("node info %v", info)
	}
	v := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("shared-options", 0)))(t).GetVolume()
	if top := v.GetAccessibleTopology(); len(top) != 1 || top[0].GetSegments()[optionsTestKey] != "a" {
		t.Errorf("volume topology %v", top)
	}
}

// TestTopologyNotShared: every response carries its own copy of the
// topology, so a caller changing one response does not change the next.
func TestTopologyNotShared(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{ctrlOpts: []rdscsi.ControllerOption{rdscsi.WithTopology(map[string]string{"zone": "a"})}})
	ns, err := rdscsi.NewNodeServer("worker-1", &nodeTestFakeConnector{}, rdscsi.WithStateDir(t.TempDir()),
		rdscsi.WithTopology(map[string]string{"zone": "a"}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// check wants the server's topology, then changes the response as a
	// careless caller would.
	check := func(what string, ts []*csi.Topology) {
		t.Helper()
		if len(ts) != 1 || len(ts[0].GetSegments()) != 1 || ts[0].GetSegments()["zone"] != "a" {
			t.Fatalf("%s: topology %v, want zone=a", what, ts)
		}
		ts[0].Segments["zone"] = "b"
		ts[0].Segments["rack"] = "r1"
	}
	// Direct calls: over gRPC every response is a fresh copy anyway.
	for range 2 {
		v := ctrlTestMust(e.ctrl.CreateVolume(ctx, ctrlTestCreateReq("topology-copies", 0)))(t).GetVolume()
		check("CreateVolume", v.GetAccessibleTopology())
		g := ctrlTestMust(e.ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: v.VolumeId}))(t)
		check("ControllerGetVolume", g.GetVolume().GetAccessibleTopology())
		for _, entry := range ctrlTestMust(e.ctrl.ListVolumes(ctx, &csi.ListVolumesRequest{}))(t).GetEntries() {
			check("ListVolumes", entry.GetVolume().GetAccessibleTopology())
		}
		info, err := ns.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		check("NodeGetInfo", []*csi.Topology{info.GetAccessibleTopology()})
	}
	// The requisite check still sees zone a only.
	req := ctrlTestCreateReq("topology-b", 0)
	req.AccessibilityRequirements = &csi.TopologyRequirement{Requisite: []*csi.Topology{{Segments: map[string]string{"zone": "b"}}}}
	if _, err := e.ctrl.CreateVolume(ctx, req); rdscsi.Code(err) != codes.ResourceExhausted {
		t.Errorf("zone b: %v, want ResourceExhausted", err)
	}
}

// TestTopologyValidated: keys and values the CSI spec forbids are refused
// at construction by both servers.
func TestTopologyValidated(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{})
	good := []map[string]string{
		nil,
		{"zone": "a"},
		{"topology.rds.csi.srvlab.io/zone": "eu-1a", "topology.rds.csi.srvlab.io/rack": "R_1.2"},
		{strings.Repeat("k", 63): strings.Repeat("v", 63)},
	}
	bad := []map[string]string{
		{"": "a"},
		{"zone": ""},
		{"zone": "a b"},
		{"zone": "-a"},
		{"zone": strings.Repeat("v", 64)},
		{strings.Repeat("k", 64): "a"},
		{"Example.com/zone": "a"},
		{"example.com/": "a"},
		{"/zone": "a"},
		{"a/b/c": "a"},
		{"zone": "a", "Zone": "b"},
		{"one.example.com/zone": "a", "two.example.com/rack": "b"},
	}
	try := func(segs map[string]string) (ctrlErr, nodeErr error) {
		_, ctrlErr = rdscsi.NewControllerServer(e.client, e.manager, rdscsi.WithTopology(segs))
		_, nodeErr = rdscsi.NewNodeServer("n", &nodeTestFakeConnector{}, rdscsi.WithStateDir(t.TempDir()), rdscsi.WithTopology(segs))
		return ctrlErr, nodeErr
	}
	for _, segs := range good {
		if c, n := try(segs); c != nil || n != nil {
			t.Errorf("%v: controller %v, node %v", segs, c, n)
		}
	}
	for _, segs := range bad {
		if c, n := try(segs); !errors.Is(c, rdscsi.ErrInvalidArgument) || !errors.Is(n, rdscsi.ErrInvalidArgument) {
			t.Errorf("%v: controller %v, node %v, want ErrInvalidArgument", segs, c, n)
		}
	}
}
