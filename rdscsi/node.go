package rdscsi

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"

	"github.com/srvlab/rds-csi/metrics"
)

// Rescanner is implemented by Connectors that can make the kernel re-read
// the size of an attached device. NodeExpandVolume uses it before growing
// a file system.
type Rescanner interface {
	Rescan(ctx context.Context, nqn string) error
}

// Node defaults.
const (
	// DefaultNodeStateDir holds the per-volume stage records.
	DefaultNodeStateDir = "/var/lib/rds-csi/node"
	// DefaultMaxVolumesPerNode is reported by NodeGetInfo.
	DefaultMaxVolumesPerNode = 64
)

// NodeOption configures a NodeServer.
type NodeOption func(*nodeOptions)

type nodeOptions struct {
	stateDir       string
	mounter        *mount.SafeFormatAndMount
	maxVolumes     int64
	topology       map[string]string
	recorder       metrics.Recorder
	logger         *slog.Logger
	probeAttempts  int
	probeDelay     time.Duration
	releaseTimeout time.Duration
}

// WithStateDir sets the directory of the stage records (one small JSON
// file per staged volume). It must survive restarts of the node plugin.
// Default DefaultNodeStateDir.
func WithStateDir(dir string) NodeOption { return func(o *nodeOptions) { o.stateDir = dir } }

// WithMounter sets what mounts and runs blkid, mkfs and the resize tools.
// Its Exec is also used for probing, so tests can wrap it to inject
// faults. Default: mount.New("") with k8s.io/utils/exec.New().
func WithMounter(m *mount.SafeFormatAndMount) NodeOption {
	return func(o *nodeOptions) { o.mounter = m }
}

// WithMaxVolumes sets the maximum number of volumes NodeGetInfo reports
// (0: no limit). Default DefaultMaxVolumesPerNode.
func WithMaxVolumes(n int64) NodeOption { return func(o *nodeOptions) { o.maxVolumes = n } }

// WithTopology sets the accessible topology NodeGetInfo reports, e.g.
// {"topology.rds.csi.srvlab.io/node": nodeID}. Default none: RDS volumes
// are reachable from every node.
func WithTopology(segments map[string]string) NodeOption {
	return func(o *nodeOptions) { o.topology = maps.Clone(segments) }
}

// WithNodeRecorder sets the metrics recorder. Default metrics.Noop{}.
func WithNodeRecorder(r metrics.Recorder) NodeOption {
	return func(o *nodeOptions) { o.recorder = r }
}

// WithNodeLogger sets the logger. Default discards.
func WithNodeLogger(l *slog.Logger) NodeOption { return func(o *nodeOptions) { o.logger = l } }

// WithProbeRetries sets how often an inconclusive device probe is
// repeated, and the pause between probes, before NodeStageVolume gives up
// (it never formats on an inconclusive probe). Default 5 and 200ms.
func WithProbeRetries(attempts int, delay time.Duration) NodeOption {
	return func(o *nodeOptions) { o.probeAttempts, o.probeDelay = attempts, delay }
}

// WithDeviceReleaseTimeout bounds how long NodeUnstageVolume waits for
// other users of a device to let go before it refuses to disconnect it.
// Default 10s.
func WithDeviceReleaseTimeout(d time.Duration) NodeOption {
	return func(o *nodeOptions) { o.releaseTimeout = d }
}

// NodeServer is the CSI node service: it connects NVMe/TCP volumes through
// a Connector, formats and mounts them, and publishes them to pods. It
// keeps a small stage record per volume in its state directory so that a
// device that is not the one it staged is refused. It is safe for
// concurrent use; calls on one volume are serialized, and a second
// concurrent call on the same volume fails with Aborted.
type NodeServer struct {
	csi.UnimplementedNodeServer

	nodeID  string
	conn    Connector
	o       nodeOptions
	store   stageStore
	mnt     mount.Interface
	exec    utilexec.Interface
	resizer *mount.ResizeFs

	mu   sync.Mutex
	busy map[string]bool // volume IDs with a call in progress
}

var _ csi.NodeServer = (*NodeServer)(nil)

// NewNodeServer returns a NodeServer for the node nodeID. It creates the
// state directory if needed.
func NewNodeServer(nodeID string, connector Connector, opts ...NodeOption) (*NodeServer, error) {
	o := nodeOptions{
		stateDir:       DefaultNodeStateDir,
		maxVolumes:     DefaultMaxVolumesPerNode,
		recorder:       metrics.Noop{},
		logger:         slog.New(slog.DiscardHandler),
		probeAttempts:  5,
		probeDelay:     200 * time.Millisecond,
		releaseTimeout: 10 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case nodeID == "":
		return nil, errorf(ErrInvalidArgument, "node ID is required")
	case connector == nil:
		return nil, errorf(ErrInvalidArgument, "connector is required")
	case o.stateDir == "" || !filepath.IsAbs(o.stateDir):
		return nil, errorf(ErrInvalidArgument, "state directory %q must be an absolute path", o.stateDir)
	case o.maxVolumes < 0:
		return nil, errorf(ErrInvalidArgument, "max volumes %d is negative", o.maxVolumes)
	case o.probeAttempts < 1 || o.probeDelay < 0:
		return nil, errorf(ErrInvalidArgument, "probe retries need at least one attempt")
	}
	if o.recorder == nil {
		o.recorder = metrics.Noop{}
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.mounter == nil {
		o.mounter = mount.NewSafeFormatAndMount(mount.New(""), utilexec.New())
	}
	if o.mounter.Interface == nil || o.mounter.Exec == nil {
		return nil, errorf(ErrInvalidArgument, "mounter needs both a mount interface and an exec")
	}
	if err := os.MkdirAll(o.stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("rdscsi: creating state directory: %w", err)
	}
	return &NodeServer{
		nodeID:  nodeID,
		conn:    connector,
		o:       o,
		store:   stageStore{dir: o.stateDir},
		mnt:     o.mounter.Interface,
		exec:    o.mounter.Exec,
		resizer: mount.NewResizeFs(o.mounter.Exec),
		busy:    map[string]bool{},
	}, nil
}

// Register registers the node service on s.
func (n *NodeServer) Register(s grpc.ServiceRegistrar) { csi.RegisterNodeServer(s, n) }

// lock marks volumeID busy; a second caller gets ErrAborted.
func (n *NodeServer) lock(volumeID string) (unlock func(), err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.busy[volumeID] {
		return nil, errorf(ErrAborted, "an operation on volume %s is in progress", volumeID)
	}
	n.busy[volumeID] = true
	return func() {
		n.mu.Lock()
		delete(n.busy, volumeID)
		n.mu.Unlock()
	}, nil
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
