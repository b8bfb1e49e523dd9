package rdscsi

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/rdsclient"
)

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
