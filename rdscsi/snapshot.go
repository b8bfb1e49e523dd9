package rdscsi

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"strconv"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/srvlab/rds-csi/rdsclient"
)

// A snapshot is an unexported copy-on-write copy of a volume's disk, slot
// "snap-<uuid>" derived from the CO's snapshot name. RouterOS records no
// lineage and no creation time for disks, so both are written into the
// backing file name when the copy is made:
//
//	<dir>/snap-<uuid>.from-pvc-<uuid>.at-<unix seconds>.img
//
// Everything ListSnapshots and GetSnapshot report is read back from the
// device, so a restarted controller (or another replica) sees the same
// snapshots. The time comes from the controller's clock rather than the
// file's last-modified stamp, which RouterOS prints in the device's local
// time zone without naming it.

// snapshot is a snapshot read back from the device.
type snapshot struct {
	id      string
	source  string // source volume ID
	created time.Time
	disk    rdsclient.Disk
}

func (s snapshot) csi() *csi.Snapshot {
	return &csi.Snapshot{
		SizeBytes:      s.disk.SizeBytes,
		SnapshotId:     s.id,
		SourceVolumeId: s.source,
		CreationTime:   timestamppb.New(s.created),
		// A copy-on-write copy is complete when the command returns.
		ReadyToUse: true,
	}
}

// snapshotOf interprets a disk as a snapshot of ours.
func snapshotOf(d rdsclient.Disk) (snapshot, bool) {
	f, ok := parseFilePath(d.FilePath)
	if !ok || d.Type != "file" || f.id != d.Slot || !IsSnapshotID(f.id) || d.Export != nil {
		return snapshot{}, false
	}
	return snapshot{id: f.id, source: f.source, created: time.Unix(f.at, 0).UTC(), disk: d}, true
}

func snapshotFilePath(dir, id, source string, at time.Time) string {
	return path.Join(dir, id+fromInfix+source+atInfix+strconv.FormatInt(at.Unix(), 10)+fileSuffix)
}

// lookupSnapshot reads a snapshot of ours; anything else is not found.
func (c *ControllerServer) lookupSnapshot(ctx context.Context, id string) (snapshot, error) {
	if !IsSnapshotID(id) {
		return snapshot{}, errorf(ErrNotFound, "snapshot %q", clipInput(id))
	}
	d, err := c.disks.Disk(ctx, id)
	if err != nil {
		return snapshot{}, err
	}
	s, ok := snapshotOf(d)
	if !ok {
		return snapshot{}, errorf(ErrNotFound, "snapshot %s: disk not managed by this driver", id)
	}
	return s, nil
}

// CreateSnapshot implements csi.ControllerServer.
func (c *ControllerServer) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	s, err := c.createSnapshot(ctx, req)
	if err != nil {
		return nil, Status(err)
	}
	return &csi.CreateSnapshotResponse{Snapshot: s.csi()}, nil
}

func (c *ControllerServer) createSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (snapshot, error) {
	name, src := req.GetName(), req.GetSourceVolumeId()
	if name == "" {
		return snapshot{}, errorf(ErrInvalidArgument, "snapshot name is required")
	}
	if src == "" {
		return snapshot{}, errorf(ErrInvalidArgument, "source volume ID is required")
	}
	p, err := parseSnapshotParams(req.GetParameters())
	if err != nil {
		return snapshot{}, err
	}
	id := SnapshotIDForName(name)

	existing := func(d rdsclient.Disk) (snapshot, error) {
		s, ok := snapshotOf(d)
		switch {
		case !ok:
			return snapshot{}, errorf(ErrAlreadyExists, "disk %s exists but is not a snapshot of this driver", id)
		case s.source != src:
			return snapshot{}, errorf(ErrAlreadyExists, "snapshot %q exists for volume %s, not %s", clipInput(name), s.source, clipInput(src))
		}
		return s, nil
	}
	// Two commands for a new snapshot: the source is read (it must be a
	// volume of ours) and copied. A snapshot that exists already is found
	// by the copy failing, then judged (addDisk). A retry must still
	// succeed once the source is gone, so when it cannot be found an
	// existing snapshot is judged instead.
	vol, err := c.lookupVolume(ctx, src)
	if err != nil {
		if !errors.Is(err, rdsclient.ErrNotFound) && !errors.Is(err, ErrNotFound) {
			return snapshot{}, err
		}
		d, derr := c.disks.Disk(ctx, id)
		switch {
		case derr == nil:
			return existing(d)
		case !errors.Is(derr, rdsclient.ErrNotFound):
			return snapshot{}, derr
		}
		return snapshot{}, err
	}
	dir := p.volumePath
	if dir == "" {
		dir = path.Dir(vol.FilePath)
	}
	spec := rdsclient.DiskSpec{Slot: id, FilePath: snapshotFilePath(dir, id, src, c.opts.now())}
	d, found, err := c.addDisk(ctx, spec, func() (rdsclient.Disk, error) {
		return c.disks.CopyDisk(ctx, vol, spec)
	})
	if err != nil {
		return snapshot{}, err
	}
	if found {
		return existing(d)
	}
	s, ok := snapshotOf(d)
	if !ok {
		return snapshot{}, errorf(rdsclient.ErrUnexpectedOutput, "snapshot %s read back as %+v", id, d)
	}
	c.opts.logger.InfoContext(ctx, "snapshot created", slog.String("snapshot", id), slog.String("volume", src))
	return s, nil
}

// DeleteSnapshot implements csi.ControllerServer. Copies are independent
// of their source, so snapshots and volumes are deleted in any order.
func (c *ControllerServer) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if err := c.deleteSnapshot(ctx, req.GetSnapshotId()); err != nil {
		return nil, Status(err)
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

func (c *ControllerServer) deleteSnapshot(ctx context.Context, id string) error {
	if id == "" {
		return errorf(ErrInvalidArgument, "snapshot ID is required")
	}
	if !IsSnapshotID(id) {
		return nil
	}
	s, err := c.lookupSnapshot(ctx, id)
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
	if err := c.deleteDisk(ctx, s.disk); err != nil {
		return err
	}
	c.opts.logger.InfoContext(ctx, "snapshot deleted", slog.String("snapshot", id))
	return nil
}

// GetSnapshot implements csi.ControllerServer.
func (c *ControllerServer) GetSnapshot(ctx context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	if req.GetSnapshotId() == "" {
		return nil, Status(errorf(ErrInvalidArgument, "snapshot ID is required"))
	}
	s, err := c.lookupSnapshot(ctx, req.GetSnapshotId())
	if err != nil {
		return nil, Status(err)
	}
	return &csi.GetSnapshotResponse{Snapshot: s.csi()}, nil
}

// ListSnapshots implements csi.ControllerServer.
func (c *ControllerServer) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	resp, err := c.listSnapshots(ctx, req)
	if err != nil {
		return nil, Status(err)
	}
	return resp, nil
}

func (c *ControllerServer) listSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, errorf(ErrInvalidArgument, "max_entries %d is negative", req.GetMaxEntries())
	}
	start, err := decodeToken(tokenSnapshots, req.GetStartingToken())
	if err != nil {
		return nil, err
	}
	var snaps []snapshot
	if id := req.GetSnapshotId(); id != "" {
		// One snapshot at most: read just that disk.
		s, err := c.lookupSnapshot(ctx, id)
		switch {
		case err == nil:
			snaps = append(snaps, s)
		case !errors.Is(err, rdsclient.ErrNotFound) && !errors.Is(err, ErrNotFound):
			return nil, err
		}
	} else {
		all, err := c.disks.Disks(ctx, snapshotPrefix)
		if err != nil {
			return nil, err
		}
		for _, d := range all {
			if s, ok := snapshotOf(d); ok {
				snaps = append(snaps, s)
			}
		}
	}
	if src := req.GetSourceVolumeId(); src != "" {
		kept := snaps[:0]
		for _, s := range snaps {
			if s.source == src {
				kept = append(kept, s)
			}
		}
		snaps = kept
	}
	page, next := paginate(snaps, func(s snapshot) string { return s.id }, start, req.GetMaxEntries())
	resp := &csi.ListSnapshotsResponse{NextToken: encodeToken(tokenSnapshots, next)}
	for _, s := range page {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: s.csi()})
	}
	return resp, nil
}
