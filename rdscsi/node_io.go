package rdscsi

import (
	"context"
	"fmt"
	"time"

	mount "k8s.io/mount-utils"

	"github.com/srvlab/rds-csi/rdscsi/nvme"
)

func opStatus(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func (n *NodeServer) mountOp(ctx context.Context, op string, err error, start time.Time) {
	n.o.recorder.MountOperation(ctx, op, opStatus(err), time.Since(start))
}

func (n *NodeServer) connect(ctx context.Context, t nvme.Target) (string, error) {
	start := time.Now()
	dev, err := n.conn.Connect(ctx, t)
	n.o.recorder.NVMeConnect(ctx, opStatus(err), time.Since(start))
	if err != nil {
		return "", fmt.Errorf("rdscsi: connecting %s: %w", t.NQN, err)
	}
	return dev, nil
}

func (n *NodeServer) disconnect(ctx context.Context, nqn string) error {
	start := time.Now()
	err := n.conn.Disconnect(ctx, nqn)
	n.o.recorder.NVMeDisconnect(ctx, opStatus(err), time.Since(start))
	if err != nil {
		return fmt.Errorf("rdscsi: disconnecting %s: %w", nqn, err)
	}
	return nil
}

// device resolves the device of a staged volume now and checks that it is
// the one recorded at stage time.
func (n *NodeServer) device(ctx context.Context, rec *stageRecord) (string, deviceRecord, error) {
	dev, err := n.conn.Device(ctx, rec.NQN)
	if err != nil {
		return "", deviceRecord{}, fmt.Errorf("rdscsi: volume %s: %w", rec.VolumeID, err)
	}
	id, err := deviceIdentity(dev)
	if err != nil {
		return "", deviceRecord{}, err
	}
	if err := sameDevice(rec.Device, id); err != nil {
		return "", deviceRecord{}, err
	}
	return dev, id, nil
}

// Unmount bounds: when a umount has not returned after the bound, the
// node falls back to the mounter's force unmount, if it has one.
const (
	// defaultUnmountBound is the bound for a ctx without deadline; with
	// one, the bound is half the time left, so the fallback has the rest.
	defaultUnmountBound = 30 * time.Second
	// forceUnmountTry is how long mount-utils' UnmountWithForce tries a
	// plain umount again before it runs umount -f.
	forceUnmountTry = time.Second
)

func unmountBound(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d)/2, 0)
	}
	return defaultUnmountBound
}

// mount mounts source at target as a kernel operation on volume id (see
// kernelOps). On an abandoned mount the caller must not clean up.
func (n *NodeServer) mount(ctx context.Context, id, source, target, fsType string, opts []string) error {
	return n.runOp(ctx, id, "mount", "mount of "+target, func() error {
		return n.mnt.Mount(source, target, fsType, opts)
	})
}

// unmount unmounts p as a kernel operation on volume id (see kernelOps).
// A umount that has not returned after unmountBound is followed, when the
// mounter is a mount.MounterForceUnmounter, by its UnmountWithForce
// (umount -f; the plain umount goes on meanwhile and keeps the volume
// busy until it returns). A forced unmount only helps file systems that
// can abort their I/O; the device check before a disconnect
// (waitReleased) still refuses a device whose file system has not let go.
func (n *NodeServer) unmount(ctx context.Context, id, p string) error {
	what := "unmount of " + p
	done := n.startOp(ctx, id, "unmount", func() error { return n.mnt.Unmount(p) })
	force, canForce := n.mnt.(mount.MounterForceUnmounter)
	if !canForce {
		return wrapUnmount(p, waitOp(ctx, done, what))
	}
	t := time.NewTimer(unmountBound(ctx))
	defer t.Stop()
	select {
	case err := <-done:
		return wrapUnmount(p, withCtxErr(ctx, err))
	case <-ctx.Done():
		return wrapUnmount(p, waitOp(ctx, done, what))
	case <-t.C:
	}
	n.o.logger.WarnContext(ctx, "unmount does not return; forcing it", "path", p, "volume", id)
	forced := n.startOp(ctx, id, "unmount", func() error { return force.UnmountWithForce(p, forceUnmountTry) })
	for {
		select {
		case err := <-done:
			if err == nil {
				return nil
			}
			done = nil // the forced unmount decides
		case err := <-forced:
			return wrapUnmount(p, withCtxErr(ctx, err))
		case <-ctx.Done():
			return wrapUnmount(p, waitOp(ctx, forced, "forced "+what))
		}
	}
}

func wrapUnmount(p string, err error) error {
	if err == nil || abandoned(err) {
		return err
	}
	return fmt.Errorf("rdscsi: unmounting %s: %w", p, err)
}

// unmountAll removes every mount stacked on p, corrupted ones included.
func (n *NodeServer) unmountAll(ctx context.Context, id, p string) error {
	const maxStacked = 16
	for range maxStacked {
		st, err := statPath(p)
		if err != nil {
			return err
		}
		if !st.mounted() && !st.corrupted {
			return nil
		}
		if st.corrupted {
			n.o.recorder.StaleMount(ctx)
			n.o.logger.WarnContext(ctx, "corrupted mount", "path", p)
		}
		if err := n.unmount(ctx, id, p); err != nil {
			return err
		}
	}
	return fmt.Errorf("rdscsi: %s is still mounted after %d unmounts", p, maxStacked)
}

// statCleared stats p, first unmounting everything from it when its
// mount is corrupted (a dead device's file system), so the caller sees a
// path it can mount on again.
func (n *NodeServer) statCleared(ctx context.Context, id, p string) (pathState, error) {
	st, err := statPath(p)
	if err != nil || !st.corrupted {
		return st, err
	}
	if err := n.unmountAll(ctx, id, p); err != nil {
		return pathState{}, err
	}
	return statPath(p)
}

// resize grows the file system of dev mounted at p as a kernel operation
// on volume id (see kernelOps); the resize tools run under ctx.
func (n *NodeServer) resize(ctx context.Context, id, dev, p string) error {
	r := mount.NewResizeFs(ctxExec{ctx: ctx, Interface: n.exec})
	return n.runOp(ctx, id, "resize", "resize of "+p, func() error {
		_, err := r.Resize(dev, p)
		return err
	})
}
