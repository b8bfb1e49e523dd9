package rdscsi

import (
	"log/slog"
	"maps"
	"regexp"
	"strings"

	"github.com/srvlab/rds-csi/metrics"
)

// Options are values of small interfaces (ControllerOption, NodeOption,
// IdentityOption) so that one value can configure several servers: what
// both the ControllerServer and the NodeServer use (logger, recorder,
// topology, volume limit) is set by a ServerOption, which either
// constructor accepts.

// ServerOption configures a ControllerServer and a NodeServer alike;
// pass the same value to both constructors.
type ServerOption interface {
	ControllerOption
	NodeOption
}

// serverOptions are the settings every server has.
type serverOptions struct {
	logger     *slog.Logger
	recorder   metrics.Recorder
	topology   map[string]string
	maxVolumes int64
}

type serverOption func(*serverOptions)

func (f serverOption) applyController(o *controllerOptions) { f(&o.serverOptions) }
func (f serverOption) applyNode(o *nodeOptions)             { f(&o.serverOptions) }

// WithLogger sets the logger of a server. The default, and nil, discard.
func WithLogger(l *slog.Logger) ServerOption {
	return serverOption(func(o *serverOptions) {
		if l != nil {
			o.logger = l
		}
	})
}

// WithRecorder sets where a server reports metrics: the NodeServer its
// NVMe/TCP connects, mounts and stale mounts, the ControllerServer the
// attachments it refuses itself (a node asking again with another access
// mode; the Attachments report their own refusals through their observer).
// The default, and nil, is metrics.Noop.
func WithRecorder(r metrics.Recorder) ServerOption {
	return serverOption(func(o *serverOptions) {
		if r != nil {
			o.recorder = r
		}
	})
}

// TopologyOption is a ServerOption that an IdentityServer accepts too.
type TopologyOption interface {
	ServerOption
	IdentityOption
}

type topologyOption struct{ serverOption }

func (t topologyOption) applyIdentity(o *identityOptions) {
	var so serverOptions
	t.serverOption(&so)
	o.topology = len(so.topology) > 0
}

// WithTopology sets the topology segments, e.g.
// {"topology.rds.csi.srvlab.io/zone": "a"}. A ControllerServer gives them
// to every volume as its accessible topology (the segments from which the
// RDS is reachable) and refuses requests requiring others; a NodeServer
// reports them in NodeGetInfo; an IdentityServer given a non-empty map
// declares VOLUME_ACCESSIBILITY_CONSTRAINTS. Give all three the same
// value. Keys and values must follow the CSI spec
// (an optional DNS prefix and "/", a name; values of at most 63
// characters). The map is copied. Default none: every node reaches the
// RDS.
func WithTopology(segments map[string]string) TopologyOption {
	segments = maps.Clone(segments)
	return topologyOption{serverOption(func(o *serverOptions) { o.topology = maps.Clone(segments) })}
}

// WithMaxVolumesPerNode sets how many volumes one node may have published
// (0: no limit; negative is refused). A NodeServer reports it in
// NodeGetInfo (default DefaultMaxVolumesPerNode). A ControllerServer
// enforces it (default no limit), even for a CO that does not:
// ControllerPublishVolume of one more volume to a node at the limit fails
// with ResourceExhausted, and the Attachments must implement
// NodeAttachments, as *attach.Manager does. Give both servers the same
// value.
func WithMaxVolumesPerNode(n int64) ServerOption {
	return serverOption(func(o *serverOptions) { o.maxVolumes = n })
}

// check validates the settings and fills in defaults.
func (o *serverOptions) check() error {
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.recorder == nil {
		o.recorder = metrics.Noop{}
	}
	if o.maxVolumes < 0 {
		return errorf(ErrInvalidArgument, "max volumes per node %d is negative", o.maxVolumes)
	}
	return checkTopology(o.topology)
}

// Topology keys and values as the CSI spec defines them.
var (
	topologyPrefix = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)
	topologyName   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)
)

// checkTopology validates topology segments: keys "[prefix/]name" with a
// lower-case domain prefix shared by every key, unique regardless of
// case, and values of the same form as names.
func checkTopology(segments map[string]string) error {
	prefix, seen := "", map[string]bool{}
	for k, v := range segments {
		p, name, ok := strings.Cut(k, "/")
		if !ok {
			p, name = "", k
		}
		switch {
		case ok && (len(p) > 63 || !topologyPrefix.MatchString(p)):
			return errorf(ErrInvalidArgument, "topology key %q: invalid prefix", clipInput(k))
		case len(name) > 63 || !topologyName.MatchString(name):
			return errorf(ErrInvalidArgument, "topology key %q: invalid name", clipInput(k))
		case len(v) > 63 || !topologyName.MatchString(v):
			return errorf(ErrInvalidArgument, "topology value %q of %q is invalid", clipInput(v), clipInput(k))
		case seen[strings.ToLower(k)]:
			return errorf(ErrInvalidArgument, "topology keys %q differ only in case", clipInput(k))
		case len(seen) > 0 && p != prefix:
			return errorf(ErrInvalidArgument, "topology keys have different prefixes (%q, %q)", clipInput(prefix), clipInput(p))
		}
		prefix, seen[strings.ToLower(k)] = p, true
	}
	return nil
}
