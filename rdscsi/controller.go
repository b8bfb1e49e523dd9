package rdscsi

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/metrics"
	"github.com/srvlab/rds-csi/rdsclient"
)

// DefaultVolumeSize is the size of a volume whose request names no
// capacity.
const DefaultVolumeSize = 1 << 30

// ControllerOption configures a ControllerServer.
type ControllerOption func(*controllerOptions)

type controllerOptions struct {
	logger      *slog.Logger
	recorder    metrics.Recorder
	volumePath  string
	nvmeAddress string
	nvmePort    int
	defaultSize int64
	nodeLookup  NodeLookup
	maxPerNode  int
	topology    map[string]string
	now         func() time.Time
}

// WithLogger sets the logger of a ControllerServer. The default discards.
func WithLogger(l *slog.Logger) ControllerOption {
	return func(o *controllerOptions) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithRecorder sets where a ControllerServer reports the attachments it
// refuses itself (a node asking again with another access mode). Refusals
// by the Attachments are reported through their own observer. The
// default is metrics.Noop.
func WithRecorder(r metrics.Recorder) ControllerOption {
	return func(o *controllerOptions) {
		if r != nil {
			o.recorder = r
		}
	}
}

// WithVolumePath sets the directory for backing files when a StorageClass
// sets no volumePath, e.g. "/storage-pool/k8s".
func WithVolumePath(dir string) ControllerOption {
	return func(o *controllerOptions) { o.volumePath = dir }
}

// WithNVMeAddress sets the NVMe/TCP address of the RDS when a StorageClass
// sets no nvmeAddress.
func WithNVMeAddress(addr string) ControllerOption {
	return func(o *controllerOptions) { o.nvmeAddress = addr }
}

// WithNVMePort sets the NVMe/TCP port when a StorageClass sets no
// nvmePort. The default is DefaultNVMePort.
func WithNVMePort(port int) ControllerOption {
	return func(o *controllerOptions) { o.nvmePort = port }
}

// WithDefaultVolumeSize sets the size of volumes requested without a
// capacity. The default is DefaultVolumeSize; it is rounded up to a MiB.
func WithDefaultVolumeSize(n int64) ControllerOption {
	return func(o *controllerOptions) { o.defaultSize = n }
}

// WithNodeLookup sets how ControllerPublishVolume checks that a node
// exists. The default accepts every node.
func WithNodeLookup(f NodeLookup) ControllerOption {
	return func(o *controllerOptions) { o.nodeLookup = f }
}

// WithMaxVolumesPerNode makes ControllerPublishVolume refuse, with
// ResourceExhausted, to publish a volume to a node that already has n
// volumes published (0, the default, sets no limit). Set it to the
// max_volumes_per_node the nodes report (WithMaxVolumes), so that the limit
// holds even for a CO that does not enforce it. The Attachments must then
// implement NodeAttachments, as *attach.Manager does.
func WithMaxVolumesPerNode(n int) ControllerOption {
	return func(o *controllerOptions) { o.maxPerNode = n }
}

// WithAccessibleTopology declares the topology segments from which the
// RDS is reachable. Volumes then carry it as their accessible topology,
// and requests requiring other segments fail.
func WithAccessibleTopology(segments map[string]string) ControllerOption {
	return func(o *controllerOptions) {
		o.topology = make(map[string]string, len(segments))
		for k, v := range segments {
			o.topology[k] = v
		}
	}
}

// WithClock sets the clock that stamps snapshot creation times.
func WithClock(now func() time.Time) ControllerOption {
	return func(o *controllerOptions) {
		if now != nil {
			o.now = now
		}
	}
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
	nodeLocks keyedMutex
}

// NewControllerServer returns a ControllerServer managing disks through
// disks. attachments may be nil: the server then offers no
// ControllerPublishVolume and the node connects from the volume context.
func NewControllerServer(disks Disks, attachments Attachments, opts ...ControllerOption) (*ControllerServer, error) {
	if disks == nil {
		return nil, errorf(ErrInvalidArgument, "nil Disks")
	}
	o := controllerOptions{
		logger:      slog.New(slog.DiscardHandler),
		recorder:    metrics.Noop{},
		nvmePort:    DefaultNVMePort,
		defaultSize: DefaultVolumeSize,
		nodeLookup:  func(context.Context, string) (bool, error) { return true, nil },
		now:         time.Now,
	}
	for _, opt := range opts {
		opt(&o)
	}
	var err error
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
	if o.maxPerNode < 0 {
		return nil, errorf(ErrInvalidArgument, "max volumes per node %d is negative", o.maxPerNode)
	}
	if _, ok := attachments.(NodeAttachments); o.maxPerNode > 0 && !ok {
		return nil, errorf(ErrInvalidArgument, "a per-node volume limit needs Attachments that implement NodeAttachments")
	}
	return &ControllerServer{disks: disks, attachments: attachments, opts: o}, nil
}

// Register registers the server on r.
func (c *ControllerServer) Register(r grpc.ServiceRegistrar) { csi.RegisterControllerServer(r, c) }

// Probe checks that the RDS answers. IdentityServer uses it through
// WithController.
func (c *ControllerServer) Probe(ctx context.Context) error { return c.disks.Ping(ctx) }

// HasTopology reports whether the server was given an accessible topology.
func (c *ControllerServer) HasTopology() bool { return len(c.opts.topology) > 0 }

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

// CreateVolume implements csi.ControllerServer.
func (c *ControllerServer) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	v, err := c.createVolume(ctx, req)
	if err != nil {
		return nil, Status(err)
	}
	return &csi.CreateVolumeResponse{Volume: v}, nil
}

// source is a validated volume content source.
type source struct {
	id   string // snapshot or volume ID; "" for a blank volume
	size int64
}

func (c *ControllerServer) createVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.Volume, error) {
	name := req.GetName()
	if name == "" {
		return nil, errorf(ErrInvalidArgument, "volume name is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, errorf(ErrInvalidArgument, "volume capabilities are required")
	}
	for _, vc := range req.GetVolumeCapabilities() {
		if _, err := checkCapability(vc); err != nil {
			return nil, err
		}
	}
	p, err := c.opts.parseVolumeParams(req.GetParameters())
	if err != nil {
		return nil, err
	}
	if err := p.requireAddress(); err != nil {
		return nil, err
	}
	if err := c.checkTopology(req.GetAccessibilityRequirements()); err != nil {
		return nil, err
	}
	required, limit := req.GetCapacityRange().GetRequiredBytes(), req.GetCapacityRange().GetLimitBytes()
	if required < 0 || limit < 0 {
		return nil, errorf(ErrInvalidArgument, "negative capacity range")
	}
	if limit > 0 && required > limit {
		return nil, errorf(ErrInvalidArgument, "required bytes %d exceed limit bytes %d", required, limit)
	}
	if r := rdsclient.RoundUpSize(required); limit > 0 && r > limit {
		return nil, errorf(ErrOutOfRange, "no size in whole MiB satisfies the capacity range [%d, %d]", required, limit)
	}
	srcID, err := contentSourceID(req.GetVolumeContentSource())
	if err != nil {
		return nil, err
	}

	// An existing volume is judged before its source is read: a retry
	// must succeed even if the source has been deleted since.
	id := VolumeIDForName(name)
	d, err := c.disks.Disk(ctx, id)
	switch {
	case err == nil:
		return c.existingVolume(d, id, p, srcID, required, limit)
	case !errors.Is(err, rdsclient.ErrNotFound):
		return nil, err
	}

	src, err := c.contentSource(ctx, srcID)
	if err != nil {
		return nil, err
	}
	size := rdsclient.RoundUpSize(required)
	if size == 0 {
		size = c.opts.defaultSize
		if src.id != "" {
			size = rdsclient.RoundUpSize(src.size)
		}
		if limit > 0 && size > limit && src.id == "" {
			// Largest whole MiB within the limit.
			size = limit / rdsclient.MiB * rdsclient.MiB
		}
	}
	if size < src.size {
		return nil, errorf(ErrOutOfRange, "%d bytes requested, smaller than the %d bytes of source %s", size, src.size, src.id)
	}
	if size == 0 || limit > 0 && size > limit {
		return nil, errorf(ErrOutOfRange, "no size in whole MiB satisfies the capacity range [%d, %d]", required, limit)
	}

	spec := rdsclient.DiskSpec{
		Slot:      id,
		FilePath:  volumeFilePath(p.volumePath, id, src.id),
		SizeBytes: size,
		Export:    &rdsclient.NVMeExport{Port: p.port, NQN: NQN(id)},
	}
	create := func() (rdsclient.Disk, error) {
		if src.id == "" {
			return c.disks.CreateDisk(ctx, spec)
		}
		return c.disks.CopyDisk(ctx, src.id, spec)
	}
	d, err = create()
	if errors.Is(err, rdsclient.ErrExists) {
		// Created meanwhile, or by an earlier attempt whose answer was
		// lost: what is on the device decides.
		d2, err2 := c.disks.Disk(ctx, id)
		if err2 == nil {
			return c.existingVolume(d2, id, p, src.id, required, limit)
		}
		if !errors.Is(err2, rdsclient.ErrNotFound) {
			return nil, err2
		}
		// No disk, yet something is in the way: a backing file left by
		// an attempt that died between creating the file and the disk,
		// or by a deletion that removed the disk but not its file. Such
		// a file is named after this volume ID and used by no disk, so
		// no volume's data is in it; remove it and try once more.
		if err2 := c.removeOrphanFiles(ctx, id); err2 != nil {
			return nil, err2
		}
		d, err = create()
	}
	if err != nil {
		return nil, err
	}
	c.opts.logger.InfoContext(ctx, "volume created", slog.String("volume", id), slog.Int64("bytes", d.SizeBytes), slog.String("source", src.id))
	return c.volume(d, id, p, src.id), nil
}

// existingVolume returns the volume d if it is what the request asks
// for, and ErrAlreadyExists otherwise.
func (c *ControllerServer) existingVolume(d rdsclient.Disk, id string, p volumeParams, srcID string, required, limit int64) (*csi.Volume, error) {
	f, ok := parseFilePath(d.FilePath)
	switch {
	case d.Type != "file" || !ok || f.id != id:
		return nil, errorf(ErrAlreadyExists, "disk %s exists but was not created by this driver", id)
	case f.dir != p.volumePath:
		return nil, errorf(ErrAlreadyExists, "volume %s exists in %s, not %s", id, f.dir, p.volumePath)
	case f.source != srcID:
		return nil, errorf(ErrAlreadyExists, "volume %s exists with content source %q, not %q", id, f.source, srcID)
	case d.Export == nil:
		return nil, errorf(ErrAlreadyExists, "volume %s exists but is not exported", id)
	case d.Export.Port != p.port:
		return nil, errorf(ErrAlreadyExists, "volume %s is exported on port %d, not %d", id, d.Export.Port, p.port)
	case d.SizeBytes < rdsclient.RoundUpSize(required) || limit > 0 && d.SizeBytes > limit:
		return nil, errorf(ErrAlreadyExists, "volume %s exists with %d bytes, outside [%d, %d]", id, d.SizeBytes, required, limit)
	}
	return c.volume(d, id, p, srcID), nil
}

func (c *ControllerServer) volume(d rdsclient.Disk, id string, p volumeParams, srcID string) *csi.Volume {
	nqn, port := NQN(id), p.port
	if d.Export != nil {
		nqn, port = d.Export.NQN, d.Export.Port
	}
	return &csi.Volume{
		VolumeId:           id,
		CapacityBytes:      d.SizeBytes,
		VolumeContext:      p.volumeContext(nqn, port),
		ContentSource:      contentSourceOf(srcID),
		AccessibleTopology: c.accessibleTopology(),
	}
}

func contentSourceOf(srcID string) *csi.VolumeContentSource {
	switch {
	case IsSnapshotID(srcID):
		return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: srcID}}}
	case IsVolumeID(srcID):
		return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: srcID}}}
	}
	return nil
}

// contentSourceID returns the snapshot or volume ID a content source
// names, "" for none.
func contentSourceID(cs *csi.VolumeContentSource) (string, error) {
	if cs == nil {
		return "", nil
	}
	var id string
	switch t := cs.GetType().(type) {
	case *csi.VolumeContentSource_Snapshot:
		if id = t.Snapshot.GetSnapshotId(); id == "" {
			return "", errorf(ErrInvalidArgument, "content source snapshot ID is empty")
		}
		if !IsSnapshotID(id) {
			return "", errorf(ErrNotFound, "snapshot %q", clipInput(id))
		}
	case *csi.VolumeContentSource_Volume:
		if id = t.Volume.GetVolumeId(); id == "" {
			return "", errorf(ErrInvalidArgument, "content source volume ID is empty")
		}
		if !IsVolumeID(id) {
			return "", errorf(ErrNotFound, "volume %q", clipInput(id))
		}
	default:
		return "", errorf(ErrInvalidArgument, "unsupported volume content source")
	}
	return id, nil
}

// contentSource reads the source of a new volume, if any.
func (c *ControllerServer) contentSource(ctx context.Context, id string) (source, error) {
	switch {
	case IsSnapshotID(id):
		snap, err := c.lookupSnapshot(ctx, id)
		if err != nil {
			return source{}, err
		}
		return source{id: id, size: snap.disk.SizeBytes}, nil
	case IsVolumeID(id):
		d, err := c.lookupVolume(ctx, id)
		if err != nil {
			return source{}, err
		}
		return source{id: id, size: d.SizeBytes}, nil
	}
	return source{}, nil
}

// lookupVolume reads the disk of a volume of ours. Malformed IDs and
// disks that this driver did not create are reported as not found, so
// they never reach the console or get touched.
func (c *ControllerServer) lookupVolume(ctx context.Context, id string) (rdsclient.Disk, error) {
	if !IsVolumeID(id) {
		return rdsclient.Disk{}, errorf(ErrNotFound, "volume %q", clipInput(id))
	}
	d, err := c.disks.Disk(ctx, id)
	if err != nil {
		return rdsclient.Disk{}, err
	}
	if f, ok := parseFilePath(d.FilePath); d.Type != "file" || !ok || f.id != id {
		return rdsclient.Disk{}, errorf(ErrNotFound, "volume %s: disk not managed by this driver", id)
	}
	return d, nil
}

// DeleteVolume implements csi.ControllerServer.
func (c *ControllerServer) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if err := c.deleteVolume(ctx, req.GetVolumeId()); err != nil {
		return nil, Status(err)
	}
	return &csi.DeleteVolumeResponse{}, nil
}

func (c *ControllerServer) deleteVolume(ctx context.Context, id string) error {
	if id == "" {
		return errorf(ErrInvalidArgument, "volume ID is required")
	}
	if !IsVolumeID(id) {
		// Not ours, so it cannot exist: deleted as far as the CO cares.
		return nil
	}
	if c.attachments != nil {
		if a, ok := c.attachments.Get(id); ok && len(a.Nodes) > 0 {
			return errorf(ErrFailedPrecondition, "volume %s is published to %s", id, strings.Join(a.Nodes, ", "))
		}
	}
	d, err := c.lookupVolume(ctx, id)
	if errors.Is(err, rdsclient.ErrNotFound) {
		return c.removeOrphanFiles(ctx, id)
	}
	if errors.Is(err, ErrNotFound) {
		return errorf(ErrFailedPrecondition, "refusing to delete: %v", err)
	}
	if err != nil {
		return err
	}
	if err := c.deleteDisk(ctx, d); err != nil {
		return err
	}
	c.opts.logger.InfoContext(ctx, "volume deleted", slog.String("volume", id))
	return nil
}

// deleteDisk removes a disk of ours and its backing file. When the disk
// went but its file did not (the file removal failed), the file is
// removed here before giving up, since a retry would no longer know its
// path.
func (c *ControllerServer) deleteDisk(ctx context.Context, d rdsclient.Disk) error {
	err := c.disks.DeleteDisk(ctx, d.Slot)
	if err == nil || errors.Is(err, rdsclient.ErrNotFound) {
		return nil
	}
	if _, derr := c.disks.Disk(ctx, d.Slot); errors.Is(derr, rdsclient.ErrNotFound) {
		if rerr := c.disks.RemoveFile(ctx, d.FilePath); rerr == nil {
			return nil
		}
	}
	return err
}

// removeOrphanFiles removes backing files named after id that no disk
// uses: the leftovers of a deletion that removed the disk but failed
// before its file. They are looked for in the default volume directory
// and in every directory holding a disk of ours; only names this package
// writes for exactly this id are touched.
func (c *ControllerServer) removeOrphanFiles(ctx context.Context, id string) error {
	dirs := map[string]bool{}
	if c.opts.volumePath != "" {
		dirs[c.opts.volumePath] = true
	}
	inUse := map[string]bool{}
	for _, prefix := range []string{volumePrefix, snapshotPrefix} {
		disks, err := c.disks.Disks(ctx, prefix)
		if err != nil {
			return err
		}
		for _, d := range disks {
			if f, ok := parseFilePath(d.FilePath); ok {
				dirs[f.dir] = true
			}
			if d.Slot == id {
				// Created again meanwhile: nothing is orphaned.
				return nil
			}
			inUse[strings.TrimPrefix(d.FilePath, "/")] = true
		}
	}
	for dir := range dirs {
		files, err := c.disks.Files(ctx, path.Join(dir, id))
		if err != nil {
			return err
		}
		for _, f := range files {
			pf, ok := parseFilePath("/" + f.Name)
			if !ok || pf.id != id || inUse[f.Name] {
				continue
			}
			if err := c.disks.RemoveFile(ctx, "/"+f.Name); err != nil {
				return err
			}
			c.opts.logger.InfoContext(ctx, "orphan backing file removed", slog.String("file", "/"+f.Name))
		}
	}
	return nil
}

// ControllerPublishVolume implements csi.ControllerServer.
func (c *ControllerServer) ControllerPublishVolume(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	pc, err := c.publish(ctx, req)
	if err != nil {
		return nil, Status(err)
	}
	return &csi.ControllerPublishVolumeResponse{PublishContext: pc}, nil
}

func (c *ControllerServer) publish(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (map[string]string, error) {
	vid, nid := req.GetVolumeId(), req.GetNodeId()
	switch {
	case vid == "":
		return nil, errorf(ErrInvalidArgument, "volume ID is required")
	case nid == "":
		return nil, errorf(ErrInvalidArgument, "node ID is required")
	case req.GetVolumeCapability() == nil:
		return nil, errorf(ErrInvalidArgument, "volume capability is required")
	case req.GetReadonly():
		// PUBLISH_READONLY is not advertised, so a CO must send false;
		// refused rather than ignored, so nobody gets write access they
		// did not ask for.
		return nil, errorf(ErrInvalidArgument, "readonly publish is not supported; use a read-only access mode or a read-only NodePublishVolume")
	}
	block, err := checkCapability(req.GetVolumeCapability())
	if err != nil {
		return nil, err
	}
	if c.attachments == nil {
		return nil, errorf(ErrUnimplemented, "ControllerPublishVolume: no attachment store configured")
	}
	p, err := c.opts.parseVolumeContext(req.GetVolumeContext())
	if err != nil {
		return nil, err
	}
	if err := p.requireAddress(); err != nil {
		return nil, err
	}
	d, err := c.lookupVolume(ctx, vid)
	if err != nil {
		return nil, err
	}
	if d.Export == nil {
		return nil, errorf(ErrFailedPrecondition, "volume %s is not exported over NVMe/TCP", vid)
	}
	exists, err := c.opts.nodeLookup(ctx, nid)
	if err != nil {
		return nil, errorf(ErrUnavailable, "node lookup %q: %v", clipInput(nid), err)
	}
	if !exists {
		return nil, errorf(ErrNotFound, "node %q", clipInput(nid))
	}

	mode := attach.Exclusive
	if req.GetVolumeCapability().GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER && block {
		mode = attach.Migratable
	}
	if a, ok := c.attachments.Get(vid); ok && slices.Contains(a.Nodes, nid) && a.Mode != mode {
		// Refused here, before the Attachments see it, so it is counted
		// here; refusals by the Attachments are reported by their own
		// observer.
		c.opts.recorder.AttachmentConflict(ctx)
		return nil, errorf(ErrAlreadyExists, "volume %s is published to node %q as %s, requested %s", vid, nid, a.Mode, mode)
	}
	if c.opts.maxPerNode > 0 {
		unlock := c.nodeLocks.lock(nid)
		defer unlock()
		if err := c.checkNodeLimit(vid, nid); err != nil {
			return nil, err
		}
	}
	// Attach errors name the nodes holding the volume, as the spec asks
	// for FailedPrecondition.
	if err := c.attachments.Attach(ctx, attach.Request{VolumeID: vid, NodeID: nid, Mode: mode, MigrationTimeout: p.migrationTimeout}); err != nil {
		return nil, err
	}
	pc := map[string]string{
		ContextNQN:       d.Export.NQN,
		ParamNVMeAddress: p.address,
		ParamNVMePort:    fmt.Sprint(d.Export.Port),
	}
	p.addTunables(pc)
	c.opts.logger.InfoContext(ctx, "volume published", slog.String("volume", vid), slog.String("node", nid))
	return pc, nil
}

// checkNodeLimit refuses a new publish to a node at its volume limit. A
// volume already published there is a retry and always passes.
func (c *ControllerServer) checkNodeLimit(vid, nid string) error {
	if a, ok := c.attachments.Get(vid); ok && slices.Contains(a.Nodes, nid) {
		return nil
	}
	if n := len(c.attachments.(NodeAttachments).ListByNode(nid)); n >= c.opts.maxPerNode {
		return errorf(ErrResourceExhausted, "node %q already has %d volumes published, the limit", clipInput(nid), n)
	}
	return nil
}

// ControllerUnpublishVolume implements csi.ControllerServer.
func (c *ControllerServer) ControllerUnpublishVolume(ctx context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	if err := c.unpublish(ctx, req.GetVolumeId(), req.GetNodeId()); err != nil {
		return nil, Status(err)
	}
	return &csi.ControllerUnpublishVolumeResponse{}, nil
}

func (c *ControllerServer) unpublish(ctx context.Context, vid, nid string) error {
	if vid == "" {
		return errorf(ErrInvalidArgument, "volume ID is required")
	}
	if c.attachments == nil {
		return errorf(ErrUnimplemented, "ControllerUnpublishVolume: no attachment store configured")
	}
	if !IsVolumeID(vid) {
		return nil
	}
	nodes := []string{nid}
	if nid == "" {
		// No node: unpublish from every node, as the spec asks.
		a, _ := c.attachments.Get(vid)
		nodes = a.Nodes
	}
	for _, n := range nodes {
		if err := c.attachments.Detach(ctx, vid, n); err != nil {
			return err
		}
	}
	c.opts.logger.InfoContext(ctx, "volume unpublished", slog.String("volume", vid), slog.String("node", nid))
	return nil
}

// ValidateVolumeCapabilities implements csi.ControllerServer.
func (c *ControllerServer) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	resp, err := c.validate(ctx, req)
	if err != nil {
		return nil, Status(err)
	}
	return resp, nil
}

func (c *ControllerServer) validate(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, errorf(ErrInvalidArgument, "volume ID is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, errorf(ErrInvalidArgument, "volume capabilities are required")
	}
	if _, err := c.lookupVolume(ctx, req.GetVolumeId()); err != nil {
		return nil, err
	}
	if len(req.GetParameters()) > 0 {
		if _, err := c.opts.parseVolumeParams(req.GetParameters()); err != nil {
			return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
		}
	}
	for _, vc := range req.GetVolumeCapabilities() {
		if _, err := checkCapability(vc); err != nil {
			return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
		}
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

// ListVolumes implements csi.ControllerServer.
func (c *ControllerServer) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	resp, err := c.listVolumes(ctx, req)
	if err != nil {
		return nil, Status(err)
	}
	return resp, nil
}

func (c *ControllerServer) listVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	disks, next, err := c.pageOfVolumes(ctx, req.GetMaxEntries(), req.GetStartingToken())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListVolumesResponse{NextToken: next}
	for _, d := range disks {
		f, _ := parseFilePath(d.FilePath)
		e := &csi.ListVolumesResponse_Entry{Volume: &csi.Volume{
			VolumeId:           d.Slot,
			CapacityBytes:      d.SizeBytes,
			ContentSource:      contentSourceOf(f.source),
			AccessibleTopology: c.accessibleTopology(),
		}}
		if c.attachments != nil {
			a, _ := c.attachments.Get(d.Slot)
			e.Status = &csi.ListVolumesResponse_VolumeStatus{PublishedNodeIds: a.Nodes}
		}
		resp.Entries = append(resp.Entries, e)
	}
	return resp, nil
}

// pageOfVolumes lists our volumes sorted by ID from the token on.
func (c *ControllerServer) pageOfVolumes(ctx context.Context, max int32, token string) ([]rdsclient.Disk, string, error) {
	if max < 0 {
		return nil, "", errorf(ErrInvalidArgument, "max_entries %d is negative", max)
	}
	start, err := decodeToken(tokenVolumes, token)
	if err != nil {
		return nil, "", err
	}
	all, err := c.disks.Disks(ctx, volumePrefix)
	if err != nil {
		return nil, "", err
	}
	var ours []rdsclient.Disk
	for _, d := range all {
		if f, ok := parseFilePath(d.FilePath); ok && d.Type == "file" && f.id == d.Slot && IsVolumeID(d.Slot) {
			ours = append(ours, d)
		}
	}
	page, next := paginate(ours, func(d rdsclient.Disk) string { return d.Slot }, start, max)
	return page, encodeToken(tokenVolumes, next), nil
}

// paginate sorts items by key and returns up to max of them whose key is
// at least start, and the key of the first item left out ("" if none).
// Resuming from a key rather than an offset keeps pages right when items
// before the token are added or deleted.
func paginate[T any](items []T, key func(T) string, start string, max int32) ([]T, string) {
	sort.Slice(items, func(i, j int) bool { return key(items[i]) < key(items[j]) })
	i := sort.Search(len(items), func(i int) bool { return key(items[i]) >= start })
	items = items[i:]
	if max > 0 && len(items) > int(max) {
		return items[:max], key(items[max])
	}
	return items, ""
}

// GetCapacity implements csi.ControllerServer.
func (c *ControllerServer) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	resp, err := c.capacity(ctx, req)
	if err != nil {
		return nil, Status(err)
	}
	return resp, nil
}

func (c *ControllerServer) capacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	p, err := c.opts.parseVolumeParams(req.GetParameters())
	if err != nil {
		return nil, err
	}
	for _, vc := range req.GetVolumeCapabilities() {
		if _, err := checkCapability(vc); err != nil {
			// No volume with these capabilities fits anywhere.
			return &csi.GetCapacityResponse{}, nil
		}
	}
	if t := req.GetAccessibleTopology(); t != nil && !c.topologyMatches(t) {
		return &csi.GetCapacityResponse{}, nil
	}
	capy, err := c.disks.Capacity(ctx, p.pool())
	if err != nil {
		return nil, err
	}
	return &csi.GetCapacityResponse{
		AvailableCapacity: capy.FreeBytes,
		MinimumVolumeSize: wrapperspb.Int64(rdsclient.MiB),
	}, nil
}

// ControllerExpandVolume implements csi.ControllerServer. Disks grow
// online; a mounted filesystem is then grown by the node.
func (c *ControllerServer) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	resp, err := c.expand(ctx, req)
	if err != nil {
		return nil, Status(err)
	}
	return resp, nil
}

func (c *ControllerServer) expand(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, errorf(ErrInvalidArgument, "volume ID is required")
	}
	cr := req.GetCapacityRange()
	if cr == nil {
		return nil, errorf(ErrInvalidArgument, "capacity range is required")
	}
	required, limit := cr.GetRequiredBytes(), cr.GetLimitBytes()
	if required < 0 || limit < 0 || required == 0 && limit == 0 {
		return nil, errorf(ErrInvalidArgument, "capacity range [%d, %d]", required, limit)
	}
	if limit > 0 && required > limit {
		return nil, errorf(ErrInvalidArgument, "required bytes %d exceed limit bytes %d", required, limit)
	}
	nodeExpansion := true
	if vc := req.GetVolumeCapability(); vc != nil {
		block, err := checkCapability(vc)
		if err != nil {
			return nil, err
		}
		nodeExpansion = !block
	}
	size := rdsclient.RoundUpSize(required)
	if size == 0 {
		size = limit / rdsclient.MiB * rdsclient.MiB
	}
	if size == 0 || limit > 0 && size > limit {
		return nil, errorf(ErrOutOfRange, "no size in whole MiB satisfies the capacity range [%d, %d]", required, limit)
	}
	d, err := c.lookupVolume(ctx, id)
	if err != nil {
		return nil, err
	}
	if d.SizeBytes < size {
		if d, err = c.disks.ResizeDisk(ctx, id, size); err != nil {
			return nil, err
		}
		c.opts.logger.InfoContext(ctx, "volume expanded", slog.String("volume", id), slog.Int64("bytes", d.SizeBytes))
	}
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: d.SizeBytes, NodeExpansionRequired: nodeExpansion}, nil
}

// ControllerGetVolume implements csi.ControllerServer.
func (c *ControllerServer) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	resp, err := c.getVolume(ctx, req.GetVolumeId())
	if err != nil {
		return nil, Status(err)
	}
	return resp, nil
}

func (c *ControllerServer) getVolume(ctx context.Context, id string) (*csi.ControllerGetVolumeResponse, error) {
	if id == "" {
		return nil, errorf(ErrInvalidArgument, "volume ID is required")
	}
	d, err := c.lookupVolume(ctx, id)
	if err != nil {
		return nil, err
	}
	f, _ := parseFilePath(d.FilePath)
	st := &csi.ControllerGetVolumeResponse_VolumeStatus{}
	if c.attachments != nil {
		a, _ := c.attachments.Get(id)
		st.PublishedNodeIds = a.Nodes
	}
	return &csi.ControllerGetVolumeResponse{
		Volume: &csi.Volume{
			VolumeId:           id,
			CapacityBytes:      d.SizeBytes,
			ContentSource:      contentSourceOf(f.source),
			AccessibleTopology: c.accessibleTopology(),
		},
		Status: st,
	}, nil
}

// checkCapability validates one volume capability and reports whether it
// asks for a raw block device. Supported: every single-node mode with
// block or an ext4/xfs mount, and MULTI_NODE_MULTI_WRITER for raw block
// only (live migration, two nodes for its duration).
func checkCapability(vc *csi.VolumeCapability) (block bool, err error) {
	if vc == nil {
		return false, errorf(ErrInvalidArgument, "volume capability is required")
	}
	switch t := vc.GetAccessType().(type) {
	case *csi.VolumeCapability_Block:
		block = true
	case *csi.VolumeCapability_Mount:
		switch fs := t.Mount.GetFsType(); fs {
		case "", "ext4", "xfs":
		default:
			return false, errorf(ErrInvalidArgument, "filesystem %q is not supported (ext4, xfs)", clipInput(fs))
		}
	default:
		return false, errorf(ErrInvalidArgument, "access type (block or mount) is required")
	}
	switch m := vc.GetAccessMode().GetMode(); m {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
	case csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:
		if !block {
			return false, errorf(ErrInvalidArgument, "access mode %v needs a raw block volume: a filesystem cannot be mounted on two nodes", m)
		}
	case csi.VolumeCapability_AccessMode_UNKNOWN:
		return false, errorf(ErrInvalidArgument, "access mode is required")
	default:
		return false, errorf(ErrInvalidArgument, "access mode %v is not supported", m)
	}
	return block, nil
}

func (c *ControllerServer) accessibleTopology() []*csi.Topology {
	if len(c.opts.topology) == 0 {
		return nil
	}
	return []*csi.Topology{{Segments: c.opts.topology}}
}

// topologyMatches reports whether t is within our topology: every
// segment we declare has the same value in t.
func (c *ControllerServer) topologyMatches(t *csi.Topology) bool {
	for k, v := range c.opts.topology {
		if w, ok := t.GetSegments()[k]; ok && w != v {
			return false
		}
	}
	return true
}

// checkTopology fails when a request requires topologies that cannot
// reach the RDS.
func (c *ControllerServer) checkTopology(tr *csi.TopologyRequirement) error {
	if len(c.opts.topology) == 0 || len(tr.GetRequisite()) == 0 {
		return nil
	}
	for _, t := range tr.GetRequisite() {
		if c.topologyMatches(t) {
			return nil
		}
	}
	return errorf(ErrResourceExhausted, "no requisite topology can reach the RDS")
}

// Pagination tokens name the first item of the next page. They are opaque
// to the CO, carry their kind so that a token of one list is refused by
// another, and are validated before use.
const (
	tokenVolumes   = "v"
	tokenSnapshots = "s"
	tokenHealth    = "h"
	tokenVersion   = "1"
)

func encodeToken(kind, next string) string {
	if next == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(tokenVersion + kind + ":" + next))
}

// decodeToken returns the key a token resumes from; "" for no token. A
// token this package did not issue is ErrAborted, as the spec asks.
func decodeToken(kind, token string) (string, error) {
	if token == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	prefix := tokenVersion + kind + ":"
	if err != nil || !strings.HasPrefix(string(b), prefix) {
		return "", errorf(ErrAborted, "invalid starting token %q", clipInput(token))
	}
	key := string(b[len(prefix):])
	valid := IsVolumeID
	if kind == tokenSnapshots {
		valid = IsSnapshotID
	}
	if !valid(key) {
		return "", errorf(ErrAborted, "invalid starting token %q", clipInput(token))
	}
	return key, nil
}
