package rdscsi

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/rdscsi/nvme"
)

// NodeExpandVolume makes the kernel re-read the device size (when the
// connector is an nvme.Rescanner) and grows the file system of a mount
// volume.
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
		if _, err := parseCapability(vc); err != nil {
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
	if r, ok := n.conn.(nvme.Rescanner); ok {
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
		if err := n.resize(ctx, id, dev, rec.StagingPath); err != nil {
			if abandoned(err) {
				return 0, err
			}
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
