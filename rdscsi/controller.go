package rdscsi

import (
	"context"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"

	"github.com/srvlab/rds-csi/internal/keylock"
	"github.com/srvlab/rds-csi/rdsclient"
)

// DefaultVolumeSize is the size of a volume whose request names no
// capacity.
const DefaultVolumeSize = 1 << 30

// ControllerOption configures a ControllerServer: the options below, and
// the ServerOptions it shares with NodeServer (WithLogger, WithRecorder,
// WithTopology, WithMaxVolumesPerNode).
type ControllerOption interface {
	applyController(*controllerOptions)
}

type controllerOption func(*controllerOptions)

func (f controllerOption) applyController(o *controllerOptions) { f(o) }

type controllerOptions struct {
	serverOptions
	volumePath  string
	nvmeAddress string
	nvmePort    int
	defaultSize int64
	nodeLookup  NodeLookup
	now         func() time.Time
}

// WithVolumePath sets the directory for backing files when a StorageClass
// sets no volumePath, e.g. "/storage-pool/k8s".
func WithVolumePath(dir string) ControllerOption {
	return controllerOption(func(o *controllerOptions) { o.volumePath = dir })
}

// WithNVMeAddress sets the NVMe/TCP address of the RDS when a StorageClass
// sets no nvmeAddress.
func WithNVMeAddress(addr string) ControllerOption {
	return controllerOption(func(o *controllerOptions) { o.nvmeAddress = addr })
}

// WithNVMePort sets the NVMe/TCP port when a StorageClass sets no
// nvmePort. The default is DefaultNVMePort.
func WithNVMePort(port int) ControllerOption {
	return controllerOption(func(o *controllerOptions) { o.nvmePort = port })
}

// WithDefaultVolumeSize sets the size of volumes requested without a
// capacity. The default is DefaultVolumeSize; it is rounded up to a MiB.
func WithDefaultVolumeSize(n int64) ControllerOption {
	return controllerOption(func(o *controllerOptions) { o.defaultSize = n })
}

// WithNodeLookup sets how ControllerPublishVolume checks that a node
// exists. The default accepts every node; nil is refused.
func WithNodeLookup(f NodeLookup) ControllerOption {
	return controllerOption(func(o *controllerOptions) { o.nodeLookup = f })
}

// WithClock sets the clock that stamps snapshot creation times. The
// default is time.Now; nil is refused.
func WithClock(now func() time.Time) ControllerOption {
	return controllerOption(func(o *controllerOptions) { o.now = now })
}

// ControllerServer is the CSI Controller service. It keeps no volume
// state of its own: disks, their sizes and lineage are read from the RDS,
// attachments from Attachments. It is safe for concurrent use; callers
// should still chain SerializeInterceptor so that two operations on one
// volume never overlap.
type ControllerServer struct {
	csi.UnimplementedControllerServer

	disks       Disks
	attachments Attachments
	opts        controllerOptions
	// nodeLocks orders the count-then-attach of publishes to one node
	// when a per-node limit is set; other nodes are not held up.
	nodeLocks keylock.Set
}

// NewControllerServer returns a ControllerServer managing disks through
// disks. attachments may be nil: the server then offers no
// ControllerPublishVolume and the node connects from the volume context.
func NewControllerServer(disks Disks, attachments Attachments, opts ...ControllerOption) (*ControllerServer, error) {
	if disks == nil {
		return nil, errorf(ErrInvalidArgument, "nil Disks")
	}
	o := controllerOptions{
		nvmePort:    DefaultNVMePort,
		defaultSize: DefaultVolumeSize,
		nodeLookup:  func(context.Context, string) (bool, error) { return true, nil },
		now:         time.Now,
	}
	for _, opt := range opts {
		opt.applyController(&o)
	}
	err := o.serverOptions.check()
	if err != nil {
		return nil, err
	}
	if o.volumePath != "" {
		if o.volumePath, err = checkVolumePath(o.volumePath); err != nil {
			return nil, err
		}
	}
	if o.nvmeAddress != "" {
		if o.nvmeAddress, err = checkAddress(o.nvmeAddress); err != nil {
			return nil, err
		}
	}
	if o.nvmePort < 1 || o.nvmePort > 65535 {
		return nil, errorf(ErrInvalidArgument, "nvme port %d", o.nvmePort)
	}
	if o.defaultSize <= 0 {
		return nil, errorf(ErrInvalidArgument, "default volume size %d", o.defaultSize)
	}
	o.defaultSize = rdsclient.RoundUpSize(o.defaultSize)
	if o.nodeLookup == nil {
		return nil, errorf(ErrInvalidArgument, "nil NodeLookup")
	}
	if o.now == nil {
		return nil, errorf(ErrInvalidArgument, "nil clock")
	}
	if _, ok := attachments.(NodeAttachments); o.maxVolumes > 0 && !ok {
		return nil, errorf(ErrInvalidArgument, "a per-node volume limit needs Attachments that implement NodeAttachments")
	}
	return &ControllerServer{disks: disks, attachments: attachments, opts: o}, nil
}

// Register registers the server on r.
func (c *ControllerServer) Register(r grpc.ServiceRegistrar) { csi.RegisterControllerServer(r, c) }

// probe checks that the RDS answers; IdentityServer runs it through
// WithController.
func (c *ControllerServer) probe(ctx context.Context) error { return c.disks.Ping(ctx) }

// hasTopology reports whether the server was given a topology.
func (c *ControllerServer) hasTopology() bool { return len(c.opts.topology) > 0 }

// capabilities lists what this configuration can serve; nothing is
// advertised without a working RPC behind it.
func (c *ControllerServer) capabilities() []csi.ControllerServiceCapability_RPC_Type {
	caps := []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csi.ControllerServiceCapability_RPC_GET_CAPACITY,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_GET_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_GET_VOLUME,
		csi.ControllerServiceCapability_RPC_GET_VOLUME_HEALTH,
		csi.ControllerServiceCapability_RPC_LIST_VOLUME_HEALTH,
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	}
	if c.attachments != nil {
		caps = append(caps,
			csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
			csi.ControllerServiceCapability_RPC_LIST_VOLUMES_PUBLISHED_NODES)
	}
	return caps
}

// ControllerGetCapabilities implements csi.ControllerServer.
func (c *ControllerServer) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var out []*csi.ControllerServiceCapability
	for _, t := range c.capabilities() {
		out = append(out, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}},
		})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: out}, nil
}
