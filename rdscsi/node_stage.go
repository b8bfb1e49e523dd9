package rdscsi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/rdscsi/nvme"
)

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
	vc, err := parseCapability(req.GetVolumeCapability())
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
		// Read-only is a property of a staged mount; a block volume is
		// made read-only where it is published.
		if rec.Block != vc.block || rec.FSType != vc.fsType || !vc.block && rec.ReadOnly != vc.readOnly {
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

func (n *NodeServer) stageMount(ctx context.Context, id, nqn, staging string, rec *stageRecord, dev string, devID deviceRecord, vc capability) error {
	st, err := n.statCleared(ctx, id, staging)
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
		if vc.readOnly {
			return errorf(ErrFailedPrecondition, "volume %s is blank and requested read-only; refusing to format", id)
		}
		if err := n.mkfs(ctx, id, dev, vc.fsType); err != nil {
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
	rec.MountFlags, rec.ReadOnly = vc.mountFlags, vc.readOnly
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
	if vc.readOnly {
		opts = append(opts, "ro")
	}
	if err := n.mount(ctx, id, dev, staging, vc.fsType, opts); err != nil {
		if abandoned(err) {
			// The mount may still happen: the record and the staging
			// directory stay for the next stage or unstage to settle.
			return err
		}
		return fail(fmt.Errorf("rdscsi: mounting %s at %s: %w", dev, staging, err))
	}
	n.o.logger.InfoContext(ctx, "staged volume", "volume", id, "device", dev, "path", staging)
	return nil
}

// checkStagedMount accepts a repeated stage when the staging path is
// mounted from this very device and file system.
func (n *NodeServer) checkStagedMount(ctx context.Context, id, nqn, staging string, rec *stageRecord, st pathState, dev string, devID deviceRecord, vc capability) error {
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
		rec.MountFlags, rec.ReadOnly = vc.mountFlags, vc.readOnly
		return n.store.save(rec)
	}
	return nil
}

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
	if err := n.unmountAll(ctx, id, staging); err != nil {
		return err
	}

	dev, err := n.conn.Device(ctx, nqn)
	switch {
	case err == nil:
		if err := n.waitReleased(ctx, id, dev); err != nil {
			return err
		}
	case errors.Is(err, nvme.ErrNotConnected):
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
