package rdscsi

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"

	"github.com/srvlab/rds-csi/internal/durable"
	"github.com/srvlab/rds-csi/internal/keylock"
	"github.com/srvlab/rds-csi/rdscsi/nvme"
)

// Node defaults.
const (
	// DefaultNodeStateDir holds the per-volume stage records.
	DefaultNodeStateDir = "/var/lib/rds-csi/node"
	// DefaultMaxVolumesPerNode is reported by NodeGetInfo.
	DefaultMaxVolumesPerNode = 64
)

// NodeOption configures a NodeServer: the options below, and the
// ServerOptions it shares with ControllerServer (WithLogger, WithRecorder,
// WithTopology, WithMaxVolumesPerNode).
type NodeOption interface {
	applyNode(*nodeOptions)
}

type nodeOption func(*nodeOptions)

func (f nodeOption) applyNode(o *nodeOptions) { f(o) }

type nodeOptions struct {
	serverOptions
	stateDir       string
	mounter        mount.Interface
	exec           utilexec.Interface
	probeAttempts  int
	probeDelay     time.Duration
	releaseTimeout time.Duration
}

// WithStateDir sets the directory of the stage records (one small JSON
// file per staged volume). It must survive restarts of the node plugin.
// Default DefaultNodeStateDir.
func WithStateDir(dir string) NodeOption {
	return nodeOption(func(o *nodeOptions) { o.stateDir = dir })
}

// WithMounter sets what mounts, bind-mounts and unmounts, and reads the
// mount table. Default mount.New(""); nil is refused.
func WithMounter(m mount.Interface) NodeOption {
	return nodeOption(func(o *nodeOptions) { o.mounter = m })
}

// WithExec sets what runs the tools a node needs: blkid to probe a device,
// mkfs.ext4 and mkfs.xfs to format it, resize2fs and xfs_growfs to grow it.
// Tests wrap it to inject faults. Default k8s.io/utils/exec.New(); nil is
// refused.
func WithExec(e utilexec.Interface) NodeOption {
	return nodeOption(func(o *nodeOptions) { o.exec = e })
}

// WithProbeRetries sets how often an inconclusive device probe is
// repeated, and the pause between probes, before NodeStageVolume gives up
// (it never formats on an inconclusive probe). Default 5 and 200ms.
func WithProbeRetries(attempts int, delay time.Duration) NodeOption {
	return nodeOption(func(o *nodeOptions) { o.probeAttempts, o.probeDelay = attempts, delay })
}

// WithDeviceReleaseTimeout bounds how long NodeUnstageVolume waits for
// other users of a device to let go before it refuses to disconnect it.
// Default 10s; 0 checks once without waiting.
func WithDeviceReleaseTimeout(d time.Duration) NodeOption {
	return nodeOption(func(o *nodeOptions) { o.releaseTimeout = d })
}

// NodeServer is the CSI node service: it connects NVMe/TCP volumes through
// an nvme.Connector, formats and mounts them, and publishes them to pods. It
// keeps a small stage record per volume in its state directory so that a
// device that is not the one it staged is refused. It is safe for
// concurrent use; calls on one volume are serialized, and a second
// concurrent call on the same volume fails with Aborted. A call whose ctx
// ends while a mount, umount, mkfs or resize it started is still in the
// kernel returns with ctx's error, and the volume stays busy (Aborted)
// until that operation has ended.
type NodeServer struct {
	csi.UnimplementedNodeServer

	nodeID string
	conn   nvme.Connector
	o      nodeOptions
	store  stageStore
	mnt    mount.Interface
	exec   utilexec.Interface

	busy   keylock.Set // volume IDs with a call in progress
	kernel kernelOps   // kernel operations running per volume
}

var _ csi.NodeServer = (*NodeServer)(nil)

// NewNodeServer returns a NodeServer for the node nodeID. It creates the
// state directory if needed.
func NewNodeServer(nodeID string, connector nvme.Connector, opts ...NodeOption) (*NodeServer, error) {
	o := nodeOptions{
		serverOptions:  serverOptions{maxVolumes: DefaultMaxVolumesPerNode},
		stateDir:       DefaultNodeStateDir,
		mounter:        mount.New(""),
		exec:           utilexec.New(),
		probeAttempts:  5,
		probeDelay:     200 * time.Millisecond,
		releaseTimeout: 10 * time.Second,
	}
	for _, opt := range opts {
		opt.applyNode(&o)
	}
	if err := o.serverOptions.check(); err != nil {
		return nil, err
	}
	switch {
	case nodeID == "":
		return nil, errorf(ErrInvalidArgument, "node ID is required")
	case connector == nil:
		return nil, errorf(ErrInvalidArgument, "connector is required")
	case o.stateDir == "" || !filepath.IsAbs(o.stateDir):
		return nil, errorf(ErrInvalidArgument, "state directory %q must be an absolute path", o.stateDir)
	case o.mounter == nil:
		return nil, errorf(ErrInvalidArgument, "nil mounter")
	case o.exec == nil:
		return nil, errorf(ErrInvalidArgument, "nil exec")
	case o.probeAttempts < 1 || o.probeDelay < 0:
		return nil, errorf(ErrInvalidArgument, "probe retries need at least one attempt and a non-negative delay")
	case o.releaseTimeout < 0:
		return nil, errorf(ErrInvalidArgument, "device release timeout %v is negative", o.releaseTimeout)
	}
	// Durably: a stage record written into a new directory whose own
	// entry a power cut can take away is no record at all.
	if err := durable.MkdirAll(o.stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("rdscsi: creating state directory: %w", err)
	}
	return &NodeServer{
		nodeID: nodeID,
		conn:   connector,
		o:      o,
		store:  stageStore{dir: o.stateDir},
		mnt:    o.mounter,
		exec:   o.exec,
	}, nil
}

// Register registers the node service on s.
func (n *NodeServer) Register(s grpc.ServiceRegistrar) { csi.RegisterNodeServer(s, n) }

// lock marks volumeID busy; a second caller gets ErrAborted at once (the
// same policy as SerializeInterceptor, so the server is safe without it).
func (n *NodeServer) lock(volumeID string) (unlock func(), err error) {
	unlock, ok := n.busy.TryLock(volumeID)
	if !ok {
		return nil, errorf(ErrAborted, "an operation on volume %s is in progress", volumeID)
	}
	// Held on past the call while a kernel operation it started runs.
	return n.lockVolume(volumeID, unlock), nil
}

// NodeGetCapabilities lists what this node service implements.
func (n *NodeServer) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	var caps []*csi.NodeServiceCapability
	for _, t := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_EXPAND_VOLUME,
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
		csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH,
	} {
		caps = append(caps, &csi.NodeServiceCapability{Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: t}}})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

// NodeGetInfo reports the node ID, the volume limit and the topology.
func (n *NodeServer) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	resp := &csi.NodeGetInfoResponse{NodeId: n.nodeID, MaxVolumesPerNode: n.o.maxVolumes}
	if len(n.o.topology) > 0 {
		resp.AccessibleTopology = &csi.Topology{Segments: maps.Clone(n.o.topology)}
	}
	return resp, nil
}
