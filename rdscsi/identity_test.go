package rdscsi_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/srvlab/rds-csi/rdscsi"
)

func TestIdentity(t *testing.T) {
	ctx := context.Background()
	caps := func(s *rdscsi.IdentityServer) map[string]bool {
		resp, err := s.GetPluginCapabilities(ctx, &csi.GetPluginCapabilitiesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, c := range resp.Capabilities {
			if sv := c.GetService(); sv != nil {
				out[sv.Type.String()] = true
			}
			if ve := c.GetVolumeExpansion(); ve != nil {
				out["expansion "+ve.Type.String()] = true
			}
		}
		return out
	}

	newServer := func(name, version string, opts ...rdscsi.IdentityOption) *rdscsi.IdentityServer {
		t.Helper()
		s, err := rdscsi.NewIdentityServer(name, version, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	node := newServer(rdscsi.DefaultDriverName, "1.2.3")
	info, err := node.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil || info.Name != "rds.csi.srvlab.io" || info.VendorVersion != "1.2.3" {
		t.Errorf("plugin info %v %v", info, err)
	}
	if c := caps(node); len(c) != 0 {
		t.Errorf("node-only plugin advertises %v", c)
	}
	probe, err := node.Probe(ctx, &csi.ProbeRequest{})
	if err != nil || !probe.GetReady().GetValue() {
		t.Errorf("probe %v %v", probe, err)
	}

	ctl := newServer("x", "1", rdscsi.WithControllerService(true), rdscsi.WithOnlineExpansion(true), rdscsi.WithTopology(map[string]string{"topology.example.com/zone": "a"}))
	if c := caps(ctl); !c["CONTROLLER_SERVICE"] || !c["VOLUME_ACCESSIBILITY_CONSTRAINTS"] || !c["expansion ONLINE"] || len(c) != 3 {
		t.Errorf("controller capabilities %v", c)
	}

	// WithController derives everything, including the probe.
	e := newCtrlTestEnv(t, ctrlTestConfig{ctrlOpts: []rdscsi.ControllerOption{rdscsi.WithTopology(map[string]string{"zone": "a"})}})
	derived := newServer("x", "1", rdscsi.WithController(e.ctrl))
	if c := caps(derived); !c["CONTROLLER_SERVICE"] || !c["VOLUME_ACCESSIBILITY_CONSTRAINTS"] || !c["expansion ONLINE"] {
		t.Errorf("derived capabilities %v", c)
	}
	if _, err := derived.Probe(ctx, &csi.ProbeRequest{}); err != nil {
		t.Errorf("probe with the RDS up: %v", err)
	}
	e.rds.RefuseConnections(true)
	e.rds.DropConnections()
	_, err = derived.Probe(ctx, &csi.ProbeRequest{})
	ctrlTestCode(t, err, codes.Unavailable)
	e.rds.RefuseConnections(false)

	failing := newServer("x", "1", rdscsi.WithProbe(func(context.Context) error { return errors.New("not yet") }))
	_, err = failing.Probe(ctx, &csi.ProbeRequest{})
	ctrlTestCode(t, err, codes.Unavailable)
}

// TestNewIdentityServerValidates: what the CSI spec requires of the name
// and version is checked at construction, not at the first
// GetPluginInfo.
func TestNewIdentityServerValidates(t *testing.T) {
	for _, name := range []string{"rds.csi.srvlab.io", "x", "Driver-1.example.com", strings.Repeat("a", 63)} {
		if _, err := rdscsi.NewIdentityServer(name, "1"); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	for _, name := range []string{"", strings.Repeat("a", 64), "-rds.example.com", "rds.example.com.", "rds..example.com",
		"rds_csi.example.com", "rds.-example.com", "rds csi", "rds/csi", "räds.example.com"} {
		if _, err := rdscsi.NewIdentityServer(name, "1"); !errors.Is(err, rdscsi.ErrInvalidArgument) {
			t.Errorf("%q: err %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := rdscsi.NewIdentityServer(rdscsi.DefaultDriverName, ""); !errors.Is(err, rdscsi.ErrInvalidArgument) {
		t.Errorf("empty version: err %v, want ErrInvalidArgument", err)
	}
	if _, err := rdscsi.NewIdentityServer(rdscsi.DefaultDriverName, "1", rdscsi.WithController(nil)); !errors.Is(err, rdscsi.ErrInvalidArgument) {
		t.Errorf("nil controller: err %v, want ErrInvalidArgument", err)
	}
}

func TestTopology(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{ctrlOpts: []rdscsi.ControllerOption{rdscsi.WithTopology(map[string]string{"zone": "a"})}})
	ctx := context.Background()
	req := ctrlTestCreateReq("topo", 0)
	req.AccessibilityRequirements = &csi.TopologyRequirement{Requisite: []*csi.Topology{{Segments: map[string]string{"zone": "b"}}, {Segments: map[string]string{"zone": "a"}}}}
	v := ctrlTestMust(e.cc.CreateVolume(ctx, req))(t).GetVolume()
	if len(v.AccessibleTopology) != 1 || v.AccessibleTopology[0].Segments["zone"] != "a" {
		t.Errorf("accessible topology %v", v.AccessibleTopology)
	}
	req = ctrlTestCreateReq("topo-b", 0)
	req.AccessibilityRequirements = &csi.TopologyRequirement{Requisite: []*csi.Topology{{Segments: map[string]string{"zone": "b"}}}}
	_, err := e.cc.CreateVolume(ctx, req)
	ctrlTestCode(t, err, codes.ResourceExhausted)
	c := ctrlTestMust(e.cc.GetCapacity(ctx, &csi.GetCapacityRequest{AccessibleTopology: &csi.Topology{Segments: map[string]string{"zone": "b"}}}))(t)
	if c.AvailableCapacity != 0 {
		t.Errorf("capacity in another zone %d", c.AvailableCapacity)
	}
}
