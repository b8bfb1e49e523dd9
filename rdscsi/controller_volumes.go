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

// source is a volume content source as read from the device.
type source struct {
	id   string         // snapshot or volume ID; "" for a blank volume
	disk rdsclient.Disk // its disk; zero for a blank volume
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
		if _, err := parseCapability(vc); err != nil {
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

	// One command for a new blank volume: the add. A volume that exists
	// already is found by the add failing, then judged (addDisk). A
	// content source is read first, for its size and to prove it is
	// ours; a retry must still succeed once the source is gone, so when
	// it cannot be found an existing volume is judged instead.
	id := VolumeIDForName(name)
	src, err := c.contentSource(ctx, srcID)
	if err != nil {
		if !errors.Is(err, rdsclient.ErrNotFound) && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		d, derr := c.disks.Disk(ctx, id)
		switch {
		case derr == nil:
			return c.existingVolume(d, id, p, srcID, required, limit)
		case !errors.Is(derr, rdsclient.ErrNotFound):
			return nil, derr
		}
		return nil, err
	}
	size := rdsclient.RoundUpSize(required)
	if size == 0 {
		size = c.opts.defaultSize
		if src.id != "" {
			size = rdsclient.RoundUpSize(src.disk.SizeBytes)
		}
		if limit > 0 && size > limit && src.id == "" {
			// Largest whole MiB within the limit.
			size = limit / rdsclient.MiB * rdsclient.MiB
		}
	}
	if size < src.disk.SizeBytes {
		return nil, errorf(ErrOutOfRange, "%d bytes requested, smaller than the %d bytes of source %s", size, src.disk.SizeBytes, src.id)
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
	d, existing, err := c.addDisk(ctx, spec, func() (rdsclient.Disk, error) {
		if src.id == "" {
			return c.disks.CreateDisk(ctx, spec)
		}
		return c.disks.CopyDisk(ctx, src.disk, spec)
	})
	if err != nil {
		return nil, err
	}
	if existing {
		return c.existingVolume(d, id, p, srcID, required, limit)
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
		return source{id: id, disk: snap.disk}, nil
	case IsVolumeID(id):
		d, err := c.lookupVolume(ctx, id)
		if err != nil {
			return source{}, err
		}
		return source{id: id, disk: d}, nil
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
		_, err := c.removeOrphanFiles(ctx, id)
		return err
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

// deleteDisk removes d, a disk of ours as just read, and its backing
// file. When the disk went but its file did not (the file removal
// failed), the file is removed here before giving up, since a retry would
// no longer know its path.
func (c *ControllerServer) deleteDisk(ctx context.Context, d rdsclient.Disk) error {
	err := c.disks.DeleteDisk(ctx, d)
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

// addDisk adds the disk spec describes by calling add, and reports
// whether the disk it returns was there before. When the device refuses
// the add because something is in the way (ErrExists) or the pool is full
// (ErrNoSpace, which the device may check before the slot, so a retry of
// a volume that exists on a full pool is not refused), what is on the
// device decides. A disk in the slot (created meanwhile, or by an earlier attempt
// whose answer was lost) is returned as existing, for the caller to
// judge. With no disk in the slot, the obstacle is a backing file left
// behind: by an attempt that died between creating the file and the disk,
// or by a deletion that removed the disk but not its file. Such a file is
// named after the slot and, when no disk uses it, holds no one's data: it
// is removed and add tried once more. A file some disk uses stays, and
// the add fails with ErrFailedPrecondition naming that disk.
func (c *ControllerServer) addDisk(ctx context.Context, spec rdsclient.DiskSpec, add func() (rdsclient.Disk, error)) (_ rdsclient.Disk, existing bool, _ error) {
	for try := 0; ; try++ {
		d, err := add()
		if !errors.Is(err, rdsclient.ErrExists) && !errors.Is(err, rdsclient.ErrNoSpace) {
			return d, false, err
		}
		there, rerr := c.disks.Disk(ctx, spec.Slot)
		switch {
		case rerr == nil:
			return there, true, nil
		case !errors.Is(rerr, rdsclient.ErrNotFound):
			return rdsclient.Disk{}, false, rerr
		case try > 0 || errors.Is(err, rdsclient.ErrNoSpace):
			return rdsclient.Disk{}, false, err
		}
		users, rerr := c.removeOrphanFiles(ctx, spec.Slot)
		if rerr != nil {
			return rdsclient.Disk{}, false, rerr
		}
		if slot, ok := users[fileKey(spec.FilePath)]; ok {
			return rdsclient.Disk{}, false, errorf(ErrFailedPrecondition,
				"%s needs the backing file %s, which disk %s uses", spec.Slot, spec.FilePath, slot)
		}
	}
}

// removeOrphanFiles removes the backing files named after id that no disk
// uses: the leftovers of a deletion that removed the disk but failed
// before its file, or of an add that died between the two. They are
// looked for by name in every directory, in one command; only names this
// package writes for exactly this id are touched. Only when there is such
// a file are all disks read: a file is in use when any disk names it,
// whoever owns that disk, and such a file is never removed. users maps
// each file a disk uses (a /file name, see fileKey) to the disk's slot;
// it is nil when there was nothing to remove.
func (c *ControllerServer) removeOrphanFiles(ctx context.Context, id string) (users map[string]string, err error) {
	files, err := c.disks.FilesNamed(ctx, id)
	if err != nil {
		return nil, err
	}
	var named []rdsclient.File
	for _, f := range files {
		if pf, ok := parseFilePath("/" + f.Name); ok && pf.id == id {
			named = append(named, f)
		}
	}
	if len(named) == 0 {
		return nil, nil
	}
	used, err := c.disks.FileUsers(ctx)
	if err != nil {
		return nil, err
	}
	users = make(map[string]string, len(used))
	for fp, slot := range used {
		if slot == id {
			// Created again meanwhile: nothing is orphaned.
			return nil, nil
		}
		users[fileKey(fp)] = slot
	}
	for _, f := range named {
		if slot, ok := users[fileKey(f.Name)]; ok {
			c.opts.logger.WarnContext(ctx, "backing file named after a volume or snapshot is used by another disk; left alone",
				slog.String("file", "/"+f.Name), slog.String("id", id), slog.String("disk", slot))
			continue
		}
		if err := c.disks.RemoveFile(ctx, "/"+f.Name); err != nil {
			return nil, err
		}
		c.opts.logger.InfoContext(ctx, "orphan backing file removed", slog.String("file", "/"+f.Name))
	}
	return users, nil
}

// fileKey is the /file name of a file path, as RouterOS prints it: clean
// and without the leading slash ("storage-pool/k8s/pvc-x.img"), whichever
// form it was given in.
func fileKey(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
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
		if _, err := parseCapability(vc); err != nil {
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
