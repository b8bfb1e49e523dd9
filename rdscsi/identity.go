package rdscsi

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// DefaultDriverName is the CSI driver name used unless configured
// otherwise.
const DefaultDriverName = "rds.csi.srvlab.io"

// IdentityOption configures an IdentityServer.
type IdentityOption func(*identityOptions)

type identityOptions struct {
	probe           func(context.Context) error
	controller      bool
	topology        bool
	onlineExpansion bool
}

// WithProbe sets the check Probe runs, typically a cheap read on the RDS.
func WithProbe(probe func(ctx context.Context) error) IdentityOption {
	return func(o *identityOptions) { o.probe = probe }
}

// WithControllerService declares whether this plugin instance serves the
// Controller service.
func WithControllerService(on bool) IdentityOption {
	return func(o *identityOptions) { o.controller = on }
}

// WithVolumeAccessibilityConstraints declares that volumes carry an
// accessible topology.
func WithVolumeAccessibilityConstraints(on bool) IdentityOption {
	return func(o *identityOptions) { o.topology = on }
}

// WithOnlineExpansion declares that volumes can be expanded while
// published.
func WithOnlineExpansion(on bool) IdentityOption {
	return func(o *identityOptions) { o.onlineExpansion = on }
}

// WithController derives everything from a ControllerServer: the
// Controller service, online expansion, topology when c has one, and a
// probe of the RDS (unless WithProbe is also given, later).
func WithController(c *ControllerServer) IdentityOption {
	return func(o *identityOptions) {
		if c == nil {
			return
		}
		o.controller = true
		o.onlineExpansion = true
		o.topology = c.HasTopology()
		o.probe = c.Probe
	}
}

// IdentityServer is the CSI Identity service.
type IdentityServer struct {
	csi.UnimplementedIdentityServer

	name, version string
	opts          identityOptions
}

// NewIdentityServer returns an IdentityServer for a driver name (use
// DefaultDriverName unless you run several drivers) and version.
func NewIdentityServer(driverName, version string, opts ...IdentityOption) *IdentityServer {
	s := &IdentityServer{name: driverName, version: version}
	for _, opt := range opts {
		opt(&s.opts)
	}
	return s
}

// Register registers the server on r.
func (s *IdentityServer) Register(r grpc.ServiceRegistrar) { csi.RegisterIdentityServer(r, s) }

// GetPluginInfo implements csi.IdentityServer.
func (s *IdentityServer) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	if s.name == "" {
		return nil, Status(errorf(ErrUnavailable, "driver name is not configured"))
	}
	if s.version == "" {
		return nil, Status(errorf(ErrUnavailable, "driver version is not configured"))
	}
	return &csi.GetPluginInfoResponse{Name: s.name, VendorVersion: s.version}, nil
}

// GetPluginCapabilities implements csi.IdentityServer.
func (s *IdentityServer) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	var caps []*csi.PluginCapability
	service := func(t csi.PluginCapability_Service_Type) {
		caps = append(caps, &csi.PluginCapability{Type: &csi.PluginCapability_Service_{
			Service: &csi.PluginCapability_Service{Type: t}}})
	}
	if s.opts.controller {
		service(csi.PluginCapability_Service_CONTROLLER_SERVICE)
		if s.opts.onlineExpansion {
			caps = append(caps, &csi.PluginCapability{Type: &csi.PluginCapability_VolumeExpansion_{
				VolumeExpansion: &csi.PluginCapability_VolumeExpansion{Type: csi.PluginCapability_VolumeExpansion_ONLINE}}})
		}
	}
	if s.opts.topology {
		service(csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS)
	}
	return &csi.GetPluginCapabilitiesResponse{Capabilities: caps}, nil
}

// Probe implements csi.IdentityServer. When the probe fails the plugin
// answers Unavailable: it cannot serve calls until the RDS answers again.
func (s *IdentityServer) Probe(ctx context.Context, _ *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	if s.opts.probe != nil {
		if err := s.opts.probe(ctx); err != nil {
			return nil, Status(errorf(ErrUnavailable, "probe: %v", err))
		}
	}
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}
