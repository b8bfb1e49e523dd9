package rdscsi

import (
	"context"
	"log/slog"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/rdsclient"
)

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
		c, err := parseCapability(vc)
		if err != nil {
			return nil, err
		}
		nodeExpansion = !c.block
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
		if d, err = c.disks.ResizeDisk(ctx, d, size); err != nil {
			return nil, err
		}
		c.opts.logger.InfoContext(ctx, "volume expanded", slog.String("volume", id), slog.Int64("bytes", d.SizeBytes))
	}
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: d.SizeBytes, NodeExpansionRequired: nodeExpansion}, nil
}
