package rdscsi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
)

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
	vc, err := parseCapability(req.GetVolumeCapability())
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
	// A read-only access mode binds read-only whatever the flag says.
	readOnly := req.GetReadonly() || vc.readOnly
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

	st, err := n.statCleared(ctx, id, targetPath)
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
	if err := n.mount(ctx, id, source, targetPath, "", opts); err != nil {
		if abandoned(err) {
			// The bind mount may still happen: the next publish or
			// unpublish settles the target path.
			return err
		}
		if created {
			_ = os.Remove(targetPath)
		}
		return fmt.Errorf("rdscsi: bind-mounting %s at %s: %w", source, targetPath, err)
	}
	if err := n.recordTarget(rec, targetPath, readOnly, vc.mode); err != nil {
		if uerr := n.unmount(ctx, id, targetPath); uerr == nil && created {
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

	if err := n.unmountAll(ctx, id, targetPath); err != nil {
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
