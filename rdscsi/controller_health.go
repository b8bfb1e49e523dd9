package rdscsi

import (
	"context"
	"path"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/rdsclient"
)

// Health reasons reported by ControllerGetVolumeHealth and
// ControllerListVolumeHealth (CSI 1.13 replaced VOLUME_CONDITION with
// these RPCs).
const (
	// HealthNotExported: the disk exists but is not exported over
	// NVMe/TCP, so no node can reach it.
	HealthNotExported = "NotExported"
	// HealthBackingFileMissing: the disk's backing file is not listed on
	// the pool.
	HealthBackingFileMissing = "BackingFileMissing"
	// HealthSizeMismatch: the backing file's size disagrees with the
	// disk's.
	HealthSizeMismatch = "SizeMismatch"
)

// ControllerGetVolumeHealth implements csi.ControllerServer.
func (c *ControllerServer) ControllerGetVolumeHealth(ctx context.Context, req *csi.ControllerGetVolumeHealthRequest) (*csi.ControllerGetVolumeHealthResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, Status(errorf(ErrInvalidArgument, "volume ID is required"))
	}
	d, err := c.lookupVolume(ctx, id)
	if err != nil {
		return nil, Status(err)
	}
	files, err := c.disks.Files(ctx, strings.TrimPrefix(d.FilePath, "/"))
	if err != nil {
		return nil, Status(err)
	}
	return &csi.ControllerGetVolumeHealthResponse{VolumeHealth: &csi.VolumeHealth{
		VolumeId:       id,
		HealthStatuses: diskHealth(d, files),
	}}, nil
}

// ControllerListVolumeHealth implements csi.ControllerServer. It lists
// only volumes with an adverse condition.
func (c *ControllerServer) ControllerListVolumeHealth(ctx context.Context, req *csi.ControllerListVolumeHealthRequest) (*csi.ControllerListVolumeHealthResponse, error) {
	resp, err := c.listHealth(ctx, req)
	if err != nil {
		return nil, Status(err)
	}
	return resp, nil
}

func (c *ControllerServer) listHealth(ctx context.Context, req *csi.ControllerListVolumeHealthRequest) (*csi.ControllerListVolumeHealthResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, errorf(ErrInvalidArgument, "max_entries %d is negative", req.GetMaxEntries())
	}
	start, err := decodeToken(tokenHealth, req.GetStartingToken())
	if err != nil {
		return nil, err
	}
	// Page over all our volumes, then keep the unhealthy ones: one
	// listing of disks plus one of files per directory.
	disks, _, err := c.pageOfVolumes(ctx, 0, "")
	if err != nil {
		return nil, err
	}
	filesByDir := map[string][]rdsclient.File{}
	var bad []*csi.VolumeHealth
	for _, d := range disks {
		if d.Slot < start {
			continue
		}
		dir := strings.TrimPrefix(path.Dir(d.FilePath), "/")
		files, ok := filesByDir[dir]
		if !ok {
			if files, err = c.disks.Files(ctx, dir+"/"); err != nil {
				return nil, err
			}
			filesByDir[dir] = files
		}
		if h := diskHealth(d, files); len(h) > 0 {
			bad = append(bad, &csi.VolumeHealth{VolumeId: d.Slot, HealthStatuses: h})
		}
	}
	page, next := paginate(bad, func(h *csi.VolumeHealth) string { return h.GetVolumeId() }, "", req.GetMaxEntries())
	return &csi.ControllerListVolumeHealthResponse{Entries: page, NextToken: encodeToken(tokenHealth, next)}, nil
}

// diskHealth compares a disk with the file listing that should hold its
// backing file.
func diskHealth(d rdsclient.Disk, files []rdsclient.File) []*csi.VolumeHealth_VolumeHealthEntry {
	var out []*csi.VolumeHealth_VolumeHealthEntry
	if d.Export == nil {
		out = append(out, &csi.VolumeHealth_VolumeHealthEntry{
			Status:  csi.VolumeHealthErrorType_INACCESSIBLE,
			Reason:  HealthNotExported,
			Message: "the disk is not exported over NVMe/TCP",
		})
	}
	name := strings.TrimPrefix(d.FilePath, "/")
	var file *rdsclient.File
	for i := range files {
		if files[i].Name == name {
			file = &files[i]
			break
		}
	}
	switch {
	case file == nil:
		out = append(out, &csi.VolumeHealth_VolumeHealthEntry{
			Status:  csi.VolumeHealthErrorType_DATA_LOSS,
			Reason:  HealthBackingFileMissing,
			Message: "backing file " + d.FilePath + " is not on the pool",
		})
	case !sizeAgrees(file.SizeBytes, d.SizeBytes):
		out = append(out, &csi.VolumeHealth_VolumeHealthEntry{
			Status:  csi.VolumeHealthErrorType_DEGRADED,
			Reason:  HealthSizeMismatch,
			Message: "backing file size differs from the disk size",
		})
	}
	return out
}

// sizeAgrees compares a file size read from a one-decimal human-readable
// value ("10.0GiB") with an exact disk size, within that rounding.
func sizeAgrees(file, disk int64) bool {
	diff := file - disk
	if diff < 0 {
		diff = -diff
	}
	return diff <= disk/50+rdsclient.MiB
}
