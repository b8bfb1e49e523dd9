package rdscsi

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/srvlab/rds-csi/rdsclient"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// DefaultDriverName is the CSI driver name used unless configured
// otherwise.
const DefaultDriverName = "rds.csi.srvlab.io"

// IdentityOption configures an IdentityServer.
type IdentityOption interface {
	applyIdentity(*identityOptions)
}

type identityOption func(*identityOptions)

func (f identityOption) applyIdentity(o *identityOptions) { f(o) }

type identityOptions struct {
	probe           func(context.Context) error
	controller      bool
	topology        bool
	onlineExpansion bool
	nilController   bool // WithController(nil), refused
}

// WithProbe sets the check Probe runs, typically a cheap read on the RDS.
// The default, and nil, always report ready.
func WithProbe(probe func(ctx context.Context) error) IdentityOption {
	return identityOption(func(o *identityOptions) { o.probe = probe })
}

// WithControllerService declares whether this plugin instance serves the
// Controller service.
func WithControllerService(on bool) IdentityOption {
	return identityOption(func(o *identityOptions) { o.controller = on })
}

// WithOnlineExpansion declares that volumes can be expanded while
// published.
func WithOnlineExpansion(on bool) IdentityOption {
	return identityOption(func(o *identityOptions) { o.onlineExpansion = on })
}

// WithController derives everything from a ControllerServer: the
// Controller service, online expansion, volume accessibility constraints
// when c has a topology, and a probe of the RDS (unless WithProbe is also
// given, later). A nil c is refused.
func WithController(c *ControllerServer) IdentityOption {
	return identityOption(func(o *identityOptions) {
		if c == nil {
			o.nilController = true
			return
		}
		o.controller = true
		o.onlineExpansion = true
		o.topology = c.hasTopology()
		o.probe = c.probe
	})
}

// driverNamePattern is domain name notation, as the CSI spec requires of
// a driver name.
var driverNamePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

// IdentityServer is the CSI Identity service.
type IdentityServer struct {
	csi.UnimplementedIdentityServer

	name, version string
	opts          identityOptions
}

// NewIdentityServer returns an IdentityServer for a driver name (use
// DefaultDriverName unless you run several drivers) and a version. The
// name must be what the CSI spec requires (domain name notation, at most
// 63 characters, e.g. "rds.csi.example.com") and the version must not be
// empty; otherwise the error wraps ErrInvalidArgument.
func NewIdentityServer(driverName, version string, opts ...IdentityOption) (*IdentityServer, error) {
	if err := checkDriverName(driverName); err != nil {
		return nil, err
	}
	if version == "" {
		return nil, errorf(ErrInvalidArgument, "driver version is required")
	}
	s := &IdentityServer{name: driverName, version: version}
	for _, opt := range opts {
		opt.applyIdentity(&s.opts)
	}
	if s.opts.nilController {
		return nil, errorf(ErrInvalidArgument, "nil ControllerServer")
	}
	return s, nil
}

func checkDriverName(name string) error {
	switch {
	case name == "":
		return errorf(ErrInvalidArgument, "driver name is required")
	case len(name) > 63 || !driverNamePattern.MatchString(name):
		return errorf(ErrInvalidArgument, "driver name %q is not a domain name of at most 63 characters", clipInput(name))
	}
	return nil
}

// Register registers the server on r.
func (s *IdentityServer) Register(r grpc.ServiceRegistrar) { csi.RegisterIdentityServer(r, s) }

// GetPluginInfo implements csi.IdentityServer.
func (s *IdentityServer) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
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
// A misconfiguration (the RDS's host key is not the pinned one, the login
// is refused) keeps its own code, FailedPrecondition, and its message
// says what the operator must change: waiting will not fix it.
func (s *IdentityServer) Probe(ctx context.Context, _ *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	if s.opts.probe != nil {
		if err := s.opts.probe(ctx); err != nil {
			if errors.Is(err, rdsclient.ErrHostKey) || errors.Is(err, rdsclient.ErrAuth) {
				return nil, Status(fmt.Errorf("rdscsi: probe: %w", err))
			}
			return nil, Status(errorf(ErrUnavailable, "probe: %v", err))
		}
	}
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}
