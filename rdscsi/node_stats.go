package rdscsi

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
)

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
