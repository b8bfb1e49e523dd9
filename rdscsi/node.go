package rdscsi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
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

// ---- request parsing ----

// beginPathOp validates the volume ID and one path of an unstage or
// unpublish request, in the order the CSI spec expects errors (missing
// fields first), and takes the volume's lock.
func (n *NodeServer) beginPathOp(id, pathName, p string) (clean string, unlock func(), err error) {
	if id == "" {
		return "", nil, errorf(ErrInvalidArgument, "volume ID is required")
	}
	if clean, err = requirePath(pathName, p); err != nil {
		return "", nil, err
	}
	if err := checkVolumeID(id); err != nil {
		return "", nil, err
	}
	if unlock, err = n.lock(id); err != nil {
		return "", nil, err
	}
	return clean, unlock, nil
}

// nodeCapability is a validated VolumeCapability.
type nodeCapability struct {
	block      bool
	fsType     string
	mountFlags []string
	mode       csi.VolumeCapability_AccessMode_Mode
}

func (c nodeCapability) readerOnly() bool {
	return c.mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY ||
		c.mode == csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY
}

func parseNodeCapability(vc *csi.VolumeCapability) (nodeCapability, error) {
	var c nodeCapability
	if vc == nil {
		return c, errorf(ErrInvalidArgument, "volume capability is required")
	}
	c.mode = vc.GetAccessMode().GetMode()
	if c.mode == csi.VolumeCapability_AccessMode_UNKNOWN {
		return c, errorf(ErrInvalidArgument, "volume capability has no access mode")
	}
	if _, ok := csi.VolumeCapability_AccessMode_Mode_name[int32(c.mode)]; !ok {
		return c, errorf(ErrInvalidArgument, "unknown access mode %d", c.mode)
	}
	switch {
	case vc.GetBlock() != nil:
		c.block = true
		return c, nil
	case vc.GetMount() != nil:
	default:
		return c, errorf(ErrInvalidArgument, "volume capability has neither block nor mount access")
	}
	m := vc.GetMount()
	switch c.fsType = m.GetFsType(); c.fsType {
	case "":
		c.fsType = "ext4"
	case "ext4", "xfs":
	default:
		return c, errorf(ErrInvalidArgument, "file system %q is not supported (ext4, xfs)", clipInput(c.fsType))
	}
	if m.GetVolumeMountGroup() != "" {
		return c, errorf(ErrInvalidArgument, "volume mount group is not supported")
	}
	switch c.mode {
	case csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER:
		return c, errorf(ErrInvalidArgument, "a %s file system cannot be written from several nodes; use block access", c.fsType)
	}
	for _, f := range m.GetMountFlags() {
		switch {
		case f == "" || strings.ContainsAny(f, "\x00\n"):
			return c, errorf(ErrInvalidArgument, "mount flag %q is malformed", clipInput(f))
		case f == "bind" || f == "rbind" || f == "remount":
			return c, errorf(ErrInvalidArgument, "mount flag %q is not allowed", f)
		}
	}
	c.mountFlags = slices.Clone(m.GetMountFlags())
	return c, nil
}

// nodeTarget builds the NVMe/TCP target of a volume from the publish
// context, falling back to the volume context key by key.
func nodeTarget(volumeID string, publish, volume map[string]string) (Target, error) {
	get := func(k string) string {
		if v := publish[k]; v != "" {
			return v
		}
		return volume[k]
	}
	t := Target{NQN: get(ContextNQN), Port: DefaultNVMePort}
	if t.NQN == "" {
		t.NQN = NQN(volumeID)
	} else if t.NQN != NQN(volumeID) {
		return t, errorf(ErrInvalidArgument, "nqn %q does not belong to volume %s", clipInput(t.NQN), volumeID)
	}
	addr := get(ParamNVMeAddress)
	if addr == "" {
		return t, errorf(ErrInvalidArgument, "%s missing from publish and volume context", ParamNVMeAddress)
	}
	var err error
	if t.Address, err = checkAddress(addr); err != nil {
		return t, err
	}
	if p := get(ParamNVMePort); p != "" {
		if t.Port, err = checkPort(p); err != nil {
			return t, err
		}
	}
	for key, dst := range map[string]*int{
		ParamCtrlLossTmo:    &t.CtrlLossTmo,
		ParamReconnectDelay: &t.ReconnectDelay,
		ParamKeepAliveTmo:   &t.KeepAliveTmo,
	} {
		v := get(key)
		if v == "" {
			continue
		}
		// The same bounds the controller applied to the StorageClass.
		s, err := checkSeconds(key, v, tunableMin[key])
		if err != nil {
			return t, err
		}
		*dst, _ = strconv.Atoi(s)
	}
	return t, nil
}

// requirePath checks a path the CO must send.
func requirePath(name, p string) (string, error) {
	if p == "" {
		return "", errorf(ErrInvalidArgument, "%s is required", name)
	}
	if !filepath.IsAbs(p) {
		return "", errorf(ErrInvalidArgument, "%s %q is not absolute", name, clipInput(p))
	}
	return filepath.Clean(p), nil
}

// checkVolumeID: a missing ID is invalid; an ID of another shape cannot
// be one of ours and so does not exist.
func checkVolumeID(id string) error {
	if id == "" {
		return errorf(ErrInvalidArgument, "volume ID is required")
	}
	if !IsVolumeID(id) {
		return errorf(ErrNotFound, "volume %q does not exist", clipInput(id))
	}
	return nil
}

// ---- metrics helpers ----

func opStatus(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func (n *NodeServer) mountOp(ctx context.Context, op string, err error, start time.Time) {
	n.o.recorder.MountOperation(ctx, op, opStatus(err), time.Since(start))
}

func (n *NodeServer) connect(ctx context.Context, t Target) (string, error) {
	start := time.Now()
	dev, err := n.conn.Connect(ctx, t)
	n.o.recorder.NVMeConnect(ctx, opStatus(err), time.Since(start))
	if err != nil {
		return "", fmt.Errorf("rdscsi: connecting %s: %w", t.NQN, err)
	}
	return dev, nil
}

func (n *NodeServer) disconnect(ctx context.Context, nqn string) error {
	start := time.Now()
	err := n.conn.Disconnect(ctx, nqn)
	n.o.recorder.NVMeDisconnect(ctx, opStatus(err), time.Since(start))
	if err != nil {
		return fmt.Errorf("rdscsi: disconnecting %s: %w", nqn, err)
	}
	return nil
}

// device resolves the device of a staged volume now and checks that it is
// the one recorded at stage time.
func (n *NodeServer) device(ctx context.Context, rec *stageRecord) (string, deviceRecord, error) {
	dev, err := n.conn.Device(ctx, rec.NQN)
	if err != nil {
		return "", deviceRecord{}, fmt.Errorf("rdscsi: volume %s: %w", rec.VolumeID, err)
	}
	id, err := deviceIdentity(dev)
	if err != nil {
		return "", deviceRecord{}, err
	}
	if err := sameDevice(rec.Device, id); err != nil {
		return "", deviceRecord{}, err
	}
	return dev, id, nil
}

func (n *NodeServer) unmount(ctx context.Context, p string) error {
	start := time.Now()
	err := n.mnt.Unmount(p)
	n.mountOp(ctx, "unmount", err, start)
	if err != nil {
		return fmt.Errorf("rdscsi: unmounting %s: %w", p, err)
	}
	return nil
}

// unmountAll removes every mount stacked on p, corrupted ones included.
func (n *NodeServer) unmountAll(ctx context.Context, p string) error {
	const maxStacked = 16
	for range maxStacked {
		st, err := statPath(p)
		if err != nil {
			return err
		}
		if !st.mounted() && !st.corrupted {
			return nil
		}
		if st.corrupted {
			n.o.recorder.StaleMount(ctx)
			n.o.logger.WarnContext(ctx, "corrupted mount", "path", p)
		}
		if err := n.unmount(ctx, p); err != nil {
			return err
		}
	}
	return fmt.Errorf("rdscsi: %s is still mounted after %d unmounts", p, maxStacked)
}

// statCleared stats p, first unmounting everything from it when its
// mount is corrupted (a dead device's file system), so the caller sees a
// path it can mount on again.
func (n *NodeServer) statCleared(ctx context.Context, p string) (pathState, error) {
	st, err := statPath(p)
	if err != nil || !st.corrupted {
		return st, err
	}
	if err := n.unmountAll(ctx, p); err != nil {
		return pathState{}, err
	}
	return statPath(p)
}

// ---- NodeStageVolume ----

// NodeStageVolume connects the volume and, for a mount volume, formats it
// if (and only if) it is definitely blank and mounts it at the staging
// path. Block volumes are only connected.
func (n *NodeServer) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	if err := n.stage(ctx, req); err != nil {
		n.o.logger.ErrorContext(ctx, "stage failed", "volume", req.GetVolumeId(), "err", err)
		return nil, Status(err)
	}
	return &csi.NodeStageVolumeResponse{}, nil
}

func (n *NodeServer) stage(ctx context.Context, req *csi.NodeStageVolumeRequest) error {
	id := req.GetVolumeId()
	if id == "" {
		return errorf(ErrInvalidArgument, "volume ID is required")
	}
	staging, err := requirePath("staging target path", req.GetStagingTargetPath())
	if err != nil {
		return err
	}
	vc, err := parseNodeCapability(req.GetVolumeCapability())
	if err != nil {
		return err
	}
	if err := checkVolumeID(id); err != nil {
		return err
	}
	target, err := nodeTarget(id, req.GetPublishContext(), req.GetVolumeContext())
	if err != nil {
		return err
	}
	unlock, err := n.lock(id)
	if err != nil {
		return err
	}
	defer unlock()

	rec, err := n.store.load(id)
	if err != nil {
		return err
	}
	if rec != nil {
		if rec.StagingPath != staging {
			return errorf(ErrFailedPrecondition, "volume %s is staged at %s", id, rec.StagingPath)
		}
		if rec.Block != vc.block || rec.FSType != vc.fsType || rec.ReadOnly != vc.readerOnly() {
			return errorf(ErrAlreadyExists, "volume %s is staged at %s with another capability", id, staging)
		}
	}

	dev, err := n.connect(ctx, target)
	if err != nil {
		return err
	}
	devID, err := deviceIdentity(dev)
	if err != nil {
		return err
	}
	if rec != nil {
		if err := sameDevice(rec.Device, devID); err != nil {
			return err
		}
	}
	if vc.block {
		return n.stageBlock(ctx, id, target.NQN, staging, rec, devID)
	}
	return n.stageMount(ctx, id, target.NQN, staging, rec, dev, devID, vc)
}

func newStageRecord(id, nqn, staging string, block bool) *stageRecord {
	return &stageRecord{VolumeID: id, NQN: nqn, StagingPath: staging, Block: block, StagedAt: time.Now().UTC()}
}

// stageBlock only records the device: a raw block volume is published
// straight from its device node, so nothing is created at the staging
// path.
func (n *NodeServer) stageBlock(ctx context.Context, id, nqn, staging string, rec *stageRecord, devID deviceRecord) error {
	if rec == nil {
		rec = newStageRecord(id, nqn, staging, true)
	}
	rec.Device = devID
	if err := n.store.save(rec); err != nil {
		return err
	}
	n.o.logger.InfoContext(ctx, "staged block volume", "volume", id, "device", devID.Path)
	return nil
}

func (n *NodeServer) stageMount(ctx context.Context, id, nqn, staging string, rec *stageRecord, dev string, devID deviceRecord, vc nodeCapability) error {
	st, err := n.statCleared(ctx, staging)
	if err != nil {
		return err
	}
	if st.mounted() {
		return n.checkStagedMount(ctx, id, nqn, staging, rec, st, dev, devID, vc)
	}
	if rec != nil {
		// Staged before, but nothing is mounted there now.
		n.o.recorder.StaleMount(ctx)
		n.o.logger.WarnContext(ctx, "staged volume found unmounted; mounting again", "volume", id, "path", staging)
	}
	if st.exists && (st.info == nil || !st.info.IsDir()) {
		return errorf(ErrFailedPrecondition, "staging path %s is not a usable directory", staging)
	}

	p, err := n.probe(ctx, dev, true)
	if err != nil {
		return err
	}
	switch {
	case p.blank:
		if rec != nil && rec.FSUUID != "" {
			return errorf(ErrFailedPrecondition, "device %s of volume %s shows no file system, but %s %s was staged on it; refusing to format", dev, id, rec.FSType, rec.FSUUID)
		}
		if vc.readerOnly() {
			return errorf(ErrFailedPrecondition, "volume %s is blank and requested read-only; refusing to format", id)
		}
		if err := n.mkfs(ctx, dev, vc.fsType); err != nil {
			return err
		}
		if p, err = n.probe(ctx, dev, false); err != nil {
			return err
		}
		if p.fsType != vc.fsType || p.uuid == "" {
			return fmt.Errorf("rdscsi: %s shows %s after mkfs.%s", dev, p, vc.fsType)
		}
		n.o.logger.InfoContext(ctx, "formatted volume", "volume", id, "device", dev, "fsType", vc.fsType, "uuid", p.uuid)
	case p.fsType == "":
		return errorf(ErrFailedPrecondition, "device %s of volume %s holds %s; refusing to use it as %s", dev, id, p, vc.fsType)
	case p.fsType != vc.fsType:
		return errorf(ErrFailedPrecondition, "device %s of volume %s holds a %s file system, not %s", dev, id, p.fsType, vc.fsType)
	case rec != nil && rec.FSUUID != "" && p.uuid != rec.FSUUID:
		return errorf(ErrFailedPrecondition, "device %s holds file system %s, but volume %s was staged with %s", dev, p.uuid, id, rec.FSUUID)
	}

	created := false
	newRec := rec == nil
	if newRec {
		rec = newStageRecord(id, nqn, staging, false)
	}
	if !st.exists {
		if err := os.MkdirAll(staging, 0o750); err != nil {
			return fmt.Errorf("rdscsi: creating staging path: %w", err)
		}
		created = true
		rec.CreatedStagingDir = true
	}
	// Stage creates nothing at the staging path when it fails.
	fail := func(err error) error {
		if created {
			_ = os.Remove(staging)
		}
		if newRec {
			_ = n.store.remove(id)
		}
		return err
	}
	rec.FSType, rec.FSUUID, rec.Device = vc.fsType, p.uuid, devID
	rec.MountFlags, rec.ReadOnly = vc.mountFlags, vc.readerOnly()
	// The record is durable before the mount, so a crash in between still
	// leaves the identity to check against.
	if err := n.store.save(rec); err != nil {
		return fail(err)
	}
	opts := slices.Clone(vc.mountFlags)
	if vc.fsType == "xfs" {
		// Clones share the file system UUID of their source.
		opts = append(opts, "nouuid")
	}
	if vc.readerOnly() {
		opts = append(opts, "ro")
	}
	start := time.Now()
	err = n.mnt.Mount(dev, staging, vc.fsType, opts)
	n.mountOp(ctx, "mount", err, start)
	if err != nil {
		return fail(fmt.Errorf("rdscsi: mounting %s at %s: %w", dev, staging, err))
	}
	n.o.logger.InfoContext(ctx, "staged volume", "volume", id, "device", dev, "path", staging)
	return nil
}

// checkStagedMount accepts a repeated stage when the staging path is
// mounted from this very device and file system.
func (n *NodeServer) checkStagedMount(ctx context.Context, id, nqn, staging string, rec *stageRecord, st pathState, dev string, devID deviceRecord, vc nodeCapability) error {
	top := st.top()
	if uint32(top.Major) != devID.Major || uint32(top.Minor) != devID.Minor {
		n.o.recorder.StaleMount(ctx)
		return errorf(ErrFailedPrecondition, "staging path %s is mounted from device %d:%d, not from %s (%d:%d) of volume %s; unstage it first",
			staging, top.Major, top.Minor, dev, devID.Major, devID.Minor, id)
	}
	if top.FsType != vc.fsType {
		return errorf(ErrAlreadyExists, "staging path %s holds %s, requested %s", staging, top.FsType, vc.fsType)
	}
	p, err := n.probe(ctx, dev, false)
	if err != nil {
		return err
	}
	if rec != nil && rec.FSUUID != "" && p.uuid != rec.FSUUID {
		return errorf(ErrFailedPrecondition, "device %s holds file system %s, but volume %s was staged with %s", dev, p.uuid, id, rec.FSUUID)
	}
	if rec == nil {
		// Mounted by us before the record was lost: adopt it.
		rec = newStageRecord(id, nqn, staging, false)
		rec.FSType, rec.FSUUID, rec.Device = vc.fsType, p.uuid, devID
		rec.MountFlags, rec.ReadOnly = vc.mountFlags, vc.readerOnly()
		return n.store.save(rec)
	}
	return nil
}

// ---- NodeUnstageVolume ----

// NodeUnstageVolume unmounts the staging path and disconnects the volume.
// It succeeds only when both are done: a failed disconnect is an error.
func (n *NodeServer) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	if err := n.unstage(ctx, req); err != nil {
		n.o.logger.ErrorContext(ctx, "unstage failed", "volume", req.GetVolumeId(), "err", err)
		return nil, Status(err)
	}
	return &csi.NodeUnstageVolumeResponse{}, nil
}

func (n *NodeServer) unstage(ctx context.Context, req *csi.NodeUnstageVolumeRequest) error {
	id := req.GetVolumeId()
	staging, unlock, err := n.beginPathOp(id, "staging target path", req.GetStagingTargetPath())
	if err != nil {
		return err
	}
	defer unlock()

	rec, err := n.store.load(id)
	if err != nil {
		return err
	}
	nqn := NQN(id)
	if rec != nil {
		if rec.StagingPath != staging {
			return errorf(ErrFailedPrecondition, "volume %s is staged at %s, not %s", id, rec.StagingPath, staging)
		}
		nqn = rec.NQN
		for t := range rec.Targets {
			st, err := statPath(t)
			if err != nil {
				return err
			}
			if st.mounted() || st.corrupted {
				return errorf(ErrFailedPrecondition, "volume %s is still published at %s", id, t)
			}
		}
	}
	if err := n.unmountAll(ctx, staging); err != nil {
		return err
	}

	dev, err := n.conn.Device(ctx, nqn)
	switch {
	case err == nil:
		if err := n.waitReleased(ctx, id, dev); err != nil {
			return err
		}
	case errors.Is(err, ErrNotConnected):
	default:
		return fmt.Errorf("rdscsi: volume %s: %w", id, err)
	}
	// Disconnect even when no device shows: a subsystem can be connected
	// without a namespace, and an absent one is success.
	if err := n.disconnect(ctx, nqn); err != nil {
		return err
	}
	if rec != nil && rec.CreatedStagingDir {
		if err := os.Remove(staging); err != nil && !errors.Is(err, os.ErrNotExist) {
			n.o.logger.WarnContext(ctx, "cannot remove staging directory", "path", staging, "err", err)
		}
	}
	if err := n.store.remove(id); err != nil {
		return err
	}
	n.o.logger.InfoContext(ctx, "unstaged volume", "volume", id)
	return nil
}

// waitReleased waits, bounded, until nothing but this process uses dev.
func (n *NodeServer) waitReleased(ctx context.Context, id, dev string) error {
	devID, err := deviceIdentity(dev)
	if err != nil {
		if errors.Is(err, ErrDeviceNotReady) {
			return nil // the device vanished meanwhile
		}
		return err
	}
	wait, cancel := context.WithTimeout(ctx, n.o.releaseTimeout)
	defer cancel()
	for {
		users, err := deviceUsers(dev, devID)
		if err != nil {
			return err
		}
		if len(users) == 0 {
			return nil
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-wait.Done():
			t.Stop()
			if err := ctx.Err(); err != nil {
				return err
			}
			return errorf(ErrFailedPrecondition, "device %s of volume %s is still in use: %s", dev, id, strings.Join(users, ", "))
		case <-t.C:
		}
	}
}

// ---- NodePublishVolume ----

// NodePublishVolume bind-mounts the staged file system (mount volumes) or
// the device node onto a file (block volumes) at the target path.
func (n *NodeServer) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	if err := n.publish(ctx, req); err != nil {
		n.o.logger.ErrorContext(ctx, "publish failed", "volume", req.GetVolumeId(), "err", err)
		return nil, Status(err)
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

func (n *NodeServer) publish(ctx context.Context, req *csi.NodePublishVolumeRequest) error {
	id := req.GetVolumeId()
	if id == "" {
		return errorf(ErrInvalidArgument, "volume ID is required")
	}
	targetPath, err := requirePath("target path", req.GetTargetPath())
	if err != nil {
		return err
	}
	vc, err := parseNodeCapability(req.GetVolumeCapability())
	if err != nil {
		return err
	}
	staging, err := requirePath("staging target path", req.GetStagingTargetPath())
	if err != nil {
		return err
	}
	if err := checkVolumeID(id); err != nil {
		return err
	}
	readOnly := req.GetReadonly() || vc.readerOnly()
	unlock, err := n.lock(id)
	if err != nil {
		return err
	}
	defer unlock()

	rec, err := n.store.load(id)
	if err != nil {
		return err
	}
	switch {
	case rec == nil:
		return errorf(ErrFailedPrecondition, "volume %s is not staged", id)
	case rec.StagingPath != staging:
		return errorf(ErrFailedPrecondition, "volume %s is staged at %s, not %s", id, rec.StagingPath, staging)
	case targetPath == staging:
		return errorf(ErrInvalidArgument, "target path is the staging path")
	case rec.Block != vc.block || rec.FSType != vc.fsType:
		// Over an existing publish this is an incompatible capability.
		if st, err := statPath(targetPath); err == nil && st.mounted() {
			return errorf(ErrAlreadyExists, "volume %s is published at %s with another access type", id, targetPath)
		}
		return errorf(ErrFailedPrecondition, "volume %s was staged with another access type", id)
	}
	dev, devID, err := n.device(ctx, rec)
	if err != nil {
		return err
	}
	source := dev
	if !rec.Block {
		// The staged mount must be this device, or it is stale.
		st, err := statPath(staging)
		if err != nil {
			return err
		}
		if st.corrupted || !st.mounted() {
			n.o.recorder.StaleMount(ctx)
			return errorf(ErrFailedPrecondition, "staging path %s of volume %s is not mounted; stage it again", staging, id)
		}
		if top := st.top(); uint32(top.Major) != devID.Major || uint32(top.Minor) != devID.Minor {
			n.o.recorder.StaleMount(ctx)
			return errorf(ErrFailedPrecondition, "staging path %s is mounted from %d:%d, but volume %s is now %s (%d:%d); unstage and stage it again",
				staging, top.Major, top.Minor, id, dev, devID.Major, devID.Minor)
		}
		source = staging
	}

	st, err := n.statCleared(ctx, targetPath)
	if err != nil {
		return err
	}
	if st.mounted() {
		if err := publishedCompatible(st, rec.Block, devID, readOnly); err != nil {
			return err
		}
		if tr, ok := rec.Targets[targetPath]; ok && tr.Mode != vc.mode.String() {
			return errorf(ErrAlreadyExists, "target path is published with access mode %s", tr.Mode)
		}
		return n.recordTarget(rec, targetPath, readOnly, vc.mode)
	}
	if err := singleWriter(rec, targetPath, vc.mode); err != nil {
		return err
	}

	created := false
	switch {
	case !st.exists && rec.Block:
		if err := os.MkdirAll(filepath.Dir(targetPath), 0o750); err != nil {
			return fmt.Errorf("rdscsi: creating target parent: %w", err)
		}
		f, err := os.OpenFile(targetPath, os.O_CREATE|os.O_EXCL|os.O_RDONLY|unix.O_CLOEXEC, 0o640)
		if err != nil {
			return fmt.Errorf("rdscsi: creating target file: %w", err)
		}
		_ = f.Close()
		created = true
	case !st.exists:
		if err := os.MkdirAll(targetPath, 0o750); err != nil {
			return fmt.Errorf("rdscsi: creating target directory: %w", err)
		}
		created = true
	case st.info == nil, rec.Block && st.info.IsDir(), !rec.Block && !st.info.IsDir():
		return errorf(ErrFailedPrecondition, "target path %s exists with the wrong file type", targetPath)
	}
	opts := []string{"bind"}
	if readOnly {
		opts = append(opts, "ro")
	}
	start := time.Now()
	err = n.mnt.Mount(source, targetPath, "", opts)
	n.mountOp(ctx, "mount", err, start)
	if err != nil {
		if created {
			_ = os.Remove(targetPath)
		}
		return fmt.Errorf("rdscsi: bind-mounting %s at %s: %w", source, targetPath, err)
	}
	if err := n.recordTarget(rec, targetPath, readOnly, vc.mode); err != nil {
		if uerr := n.unmount(ctx, targetPath); uerr == nil && created {
			_ = os.Remove(targetPath)
		}
		return err
	}
	n.o.logger.InfoContext(ctx, "published volume", "volume", id, "target", targetPath, "readOnly", readOnly)
	return nil
}

// publishedCompatible accepts a repeated publish of the same device with
// the same read-only flag; anything else at the target is AlreadyExists.
func publishedCompatible(st pathState, block bool, devID deviceRecord, readOnly bool) error {
	if st.info == nil {
		return errorf(ErrAlreadyExists, "target path is mounted but cannot be inspected")
	}
	sys, ok := st.info.Sys().(*syscall.Stat_t)
	if !ok {
		return errorf(ErrAlreadyExists, "target path cannot be inspected")
	}
	var same bool
	if block {
		same = st.info.Mode()&os.ModeDevice != 0 && uint64(sys.Rdev) == devID.rdev()
	} else {
		same = st.info.IsDir() && uint64(sys.Dev) == devID.rdev()
	}
	if !same {
		return errorf(ErrAlreadyExists, "target path is published from another volume or access type")
	}
	if st.readOnly() != readOnly {
		return errorf(ErrAlreadyExists, "target path is published with read-only=%t", st.readOnly())
	}
	return nil
}

// singleWriter enforces SINGLE_NODE_SINGLE_WRITER: no second target path
// while one is published with it, or for it.
func singleWriter(rec *stageRecord, targetPath string, mode csi.VolumeCapability_AccessMode_Mode) error {
	const sw = csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER
	for t, tr := range rec.Targets {
		if t == targetPath {
			continue
		}
		if mode != sw && tr.Mode != sw.String() {
			continue
		}
		st, err := statPath(t)
		if err != nil {
			return err
		}
		if st.mounted() {
			return errorf(ErrFailedPrecondition, "volume %s is published at %s for a single writer", rec.VolumeID, t)
		}
	}
	return nil
}

func (n *NodeServer) recordTarget(rec *stageRecord, targetPath string, readOnly bool, mode csi.VolumeCapability_AccessMode_Mode) error {
	want := targetRecord{ReadOnly: readOnly, Mode: mode.String()}
	if rec.Targets[targetPath] == want {
		return nil
	}
	if rec.Targets == nil {
		rec.Targets = map[string]targetRecord{}
	}
	rec.Targets[targetPath] = want
	return n.store.save(rec)
}

// ---- NodeUnpublishVolume ----

// NodeUnpublishVolume unmounts the target path and removes it. An
// unpublished or missing target is success.
func (n *NodeServer) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if err := n.unpublish(ctx, req); err != nil {
		n.o.logger.ErrorContext(ctx, "unpublish failed", "volume", req.GetVolumeId(), "err", err)
		return nil, Status(err)
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

func (n *NodeServer) unpublish(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) error {
	id := req.GetVolumeId()
	targetPath, unlock, err := n.beginPathOp(id, "target path", req.GetTargetPath())
	if err != nil {
		return err
	}
	defer unlock()

	if err := n.unmountAll(ctx, targetPath); err != nil {
		return err
	}
	// Remove only an empty directory or a file: never data.
	if err := os.Remove(targetPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rdscsi: removing target path: %w", err)
	}
	rec, err := n.store.load(id)
	if err != nil {
		return err
	}
	if rec != nil {
		if _, ok := rec.Targets[targetPath]; ok {
			delete(rec.Targets, targetPath)
			if err := n.store.save(rec); err != nil {
				return err
			}
		}
	}
	n.o.logger.InfoContext(ctx, "unpublished volume", "volume", id, "target", targetPath)
	return nil
}

// ---- NodeGetVolumeStats ----

// NodeGetVolumeStats reports bytes and inodes of a mounted file system, or
// the size of a block volume.
func (n *NodeServer) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	resp, err := n.stats(ctx, req)
	if err != nil {
		return nil, Status(err)
	}
	return resp, nil
}

// stagedAt loads the record of id and checks that p is where the volume
// is staged or published. Anything else is NotFound.
func (n *NodeServer) stagedAt(id, p string) (*stageRecord, pathState, error) {
	if err := checkVolumeID(id); err != nil {
		return nil, pathState{}, err
	}
	if !filepath.IsAbs(p) {
		return nil, pathState{}, errorf(ErrNotFound, "volume %s is not at %q", id, clipInput(p))
	}
	p = filepath.Clean(p)
	rec, err := n.store.load(id)
	if err != nil {
		return nil, pathState{}, err
	}
	if rec == nil {
		return nil, pathState{}, errorf(ErrNotFound, "volume %s is not staged on this node", id)
	}
	if _, ok := rec.Targets[p]; !ok && p != rec.StagingPath {
		return nil, pathState{}, errorf(ErrNotFound, "volume %s is not staged or published at %s", id, p)
	}
	st, err := statPath(p)
	if err != nil {
		return nil, pathState{}, err
	}
	if !st.exists && !st.mounted() {
		return nil, pathState{}, errorf(ErrNotFound, "%s does not exist", p)
	}
	return rec, st, nil
}

func (n *NodeServer) stats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, errorf(ErrInvalidArgument, "volume ID is required")
	}
	p := req.GetVolumePath()
	if p == "" {
		return nil, errorf(ErrInvalidArgument, "volume path is required")
	}
	rec, st, err := n.stagedAt(id, p)
	if err != nil {
		return nil, err
	}
	p = filepath.Clean(p)
	if st.corrupted {
		n.o.recorder.StaleMount(ctx)
		return nil, errorf(ErrDeviceNotReady, "mount at %s is corrupted", p)
	}
	if rec.Block {
		var size int64
		if p == rec.StagingPath {
			dev, _, err := n.device(ctx, rec)
			if err != nil {
				return nil, err
			}
			size, err = blockSize(dev)
			if err != nil {
				return nil, err
			}
		} else {
			if !st.mounted() {
				return nil, errorf(ErrNotFound, "volume %s is not published at %s", id, p)
			}
			if size, err = blockSize(p); err != nil {
				return nil, err
			}
		}
		return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{{Total: size, Unit: csi.VolumeUsage_BYTES}}}, nil
	}
	if !st.mounted() {
		n.o.recorder.StaleMount(ctx)
		return nil, errorf(ErrNotFound, "volume %s is not mounted at %s", id, p)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(p, &fs); err != nil {
		if mount.IsCorruptedMnt(err) {
			n.o.recorder.StaleMount(ctx)
			return nil, errorf(ErrDeviceNotReady, "statfs %s: %v", p, err)
		}
		return nil, fmt.Errorf("rdscsi: statfs %s: %w", p, err)
	}
	bs := int64(fs.Bsize)
	return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{
		{
			Unit:      csi.VolumeUsage_BYTES,
			Total:     int64(fs.Blocks) * bs,
			Available: int64(fs.Bavail) * bs,
			Used:      int64(fs.Blocks-fs.Bfree) * bs,
		},
		{
			Unit:      csi.VolumeUsage_INODES,
			Total:     int64(fs.Files),
			Available: int64(fs.Ffree),
			Used:      int64(fs.Files - fs.Ffree),
		},
	}}, nil
}

// ---- NodeGetVolumeHealth ----

// NodeGetVolumeHealth reports, from this node's view, whether the device
// of a staged volume is present and the one staged, and whether its
// staging and target paths are mounted from it.
func (n *NodeServer) NodeGetVolumeHealth(ctx context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.NodeGetVolumeHealthResponse, error) {
	h, err := n.health(ctx, req)
	if err != nil {
		return nil, Status(err)
	}
	return &csi.NodeGetVolumeHealthResponse{VolumeHealth: h}, nil
}

func (n *NodeServer) health(ctx context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.VolumeHealth, error) {
	id := req.GetVolumeId()
	if err := checkVolumeID(id); err != nil {
		return nil, err
	}
	rec, err := n.store.load(id)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, errorf(ErrNotFound, "volume %s is not staged on this node", id)
	}
	h := &csi.VolumeHealth{VolumeId: id}
	add := func(s csi.VolumeHealthErrorType, reason, format string, args ...any) {
		h.HealthStatuses = append(h.HealthStatuses, &csi.VolumeHealth_VolumeHealthEntry{Status: s, Reason: reason, Message: fmt.Sprintf(format, args...)})
	}
	_, devID, err := n.device(ctx, rec)
	switch {
	case errors.Is(err, ErrNotConnected):
		add(csi.VolumeHealthErrorType_INACCESSIBLE, "DeviceGone", "the NVMe/TCP device of the volume is gone: %v", err)
		return h, nil
	case errors.Is(err, ErrFailedPrecondition):
		add(csi.VolumeHealthErrorType_INACCESSIBLE, "DeviceMismatch", "%v", err)
		return h, nil
	case err != nil:
		add(csi.VolumeHealthErrorType_INACCESSIBLE, "DeviceUnavailable", "%v", err)
		return h, nil
	}

	var stale, unmounted []string
	check := func(p string, isStaging bool) error {
		st, err := statPath(p)
		if err != nil {
			return err
		}
		switch {
		case st.corrupted:
			stale = append(stale, p+" (corrupted)")
		case !st.mounted():
			unmounted = append(unmounted, p)
		case rec.Block && !isStaging:
			if st.info == nil || st.info.Mode()&os.ModeDevice == 0 {
				stale = append(stale, p)
			} else if sys, ok := st.info.Sys().(*syscall.Stat_t); !ok || uint64(sys.Rdev) != devID.rdev() {
				stale = append(stale, p)
			}
		default:
			if top := st.top(); uint32(top.Major) != devID.Major || uint32(top.Minor) != devID.Minor {
				stale = append(stale, p)
			} else if isStaging && !rec.ReadOnly && st.readOnly() {
				add(csi.VolumeHealthErrorType_DEGRADED, "ReadOnlyFileSystem", "%s is mounted read-only (file system errors?)", p)
			}
		}
		return nil
	}
	paths := map[string]bool{}
	if !rec.Block {
		paths[rec.StagingPath] = true
	}
	for t := range rec.Targets {
		paths[t] = false
	}
	if p := req.GetVolumePublishPath(); filepath.IsAbs(p) {
		paths[filepath.Clean(p)] = false
	}
	for _, p := range slices.Sorted(maps.Keys(paths)) {
		if err := check(p, paths[p]); err != nil {
			return nil, err
		}
	}
	if len(stale) > 0 {
		n.o.recorder.StaleMount(ctx)
		add(csi.VolumeHealthErrorType_INACCESSIBLE, "StaleMount", "not mounted from the volume's current device: %s", strings.Join(stale, ", "))
	}
	if len(unmounted) > 0 {
		n.o.recorder.StaleMount(ctx)
		add(csi.VolumeHealthErrorType_INACCESSIBLE, "NotMounted", "not mounted: %s", strings.Join(unmounted, ", "))
	}
	return h, nil
}

// ---- NodeExpandVolume ----

// NodeExpandVolume makes the kernel re-read the device size (when the
// Connector is a Rescanner) and grows the file system of a mount volume.
func (n *NodeServer) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	size, err := n.expand(ctx, req)
	if err != nil {
		n.o.logger.ErrorContext(ctx, "expand failed", "volume", req.GetVolumeId(), "err", err)
		return nil, Status(err)
	}
	return &csi.NodeExpandVolumeResponse{CapacityBytes: size}, nil
}

func (n *NodeServer) expand(ctx context.Context, req *csi.NodeExpandVolumeRequest) (int64, error) {
	id := req.GetVolumeId()
	if id == "" {
		return 0, errorf(ErrInvalidArgument, "volume ID is required")
	}
	if req.GetVolumePath() == "" {
		return 0, errorf(ErrInvalidArgument, "volume path is required")
	}
	if vc := req.GetVolumeCapability(); vc != nil {
		if _, err := parseNodeCapability(vc); err != nil {
			return 0, err
		}
	}
	if err := checkVolumeID(id); err != nil {
		return 0, err
	}
	unlock, err := n.lock(id)
	if err != nil {
		return 0, err
	}
	defer unlock()
	rec, _, err := n.stagedAt(id, req.GetVolumePath())
	if err != nil {
		return 0, err
	}
	if vc := req.GetVolumeCapability(); vc != nil && (vc.GetBlock() != nil) != rec.Block {
		return 0, errorf(ErrInvalidArgument, "volume %s was staged with another access type", id)
	}
	if r, ok := n.conn.(Rescanner); ok {
		if err := r.Rescan(ctx, rec.NQN); err != nil {
			return 0, fmt.Errorf("rdscsi: rescanning volume %s: %w", id, err)
		}
	}
	dev, devID, err := n.device(ctx, rec)
	if err != nil {
		return 0, err
	}
	if want := req.GetCapacityRange().GetRequiredBytes(); want > devID.SizeBytes {
		return 0, errorf(ErrDeviceNotReady, "device %s shows %d bytes, %d required; the new size is not visible yet", dev, devID.SizeBytes, want)
	}
	if !rec.Block {
		st, err := statPath(rec.StagingPath)
		if err != nil {
			return 0, err
		}
		if !st.mounted() || uint32(st.top().Major) != devID.Major || uint32(st.top().Minor) != devID.Minor {
			n.o.recorder.StaleMount(ctx)
			return 0, errorf(ErrFailedPrecondition, "staging path %s is not mounted from %s", rec.StagingPath, dev)
		}
		start := time.Now()
		_, err = n.resizer.Resize(dev, rec.StagingPath)
		n.mountOp(ctx, "resize", err, start)
		if err != nil {
			return 0, fmt.Errorf("rdscsi: growing the file system of volume %s: %w", id, err)
		}
	}
	if devID.SizeBytes != rec.Device.SizeBytes {
		rec.Device.SizeBytes = devID.SizeBytes
		if err := n.store.save(rec); err != nil {
			return 0, err
		}
	}
	n.o.logger.InfoContext(ctx, "expanded volume", "volume", id, "bytes", devID.SizeBytes)
	return devID.SizeBytes, nil
}

// ---- NodeGetCapabilities, NodeGetInfo ----

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
