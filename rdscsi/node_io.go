package rdscsi

import (
	"context"
	"fmt"
	"time"
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

func (n *NodeServer) connect(ctx context.Context, t Target) (string, error) {
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

func (n *NodeServer) unmount(ctx context.Context, p string) error {
	start := time.Now()
	err := n.mnt.Unmount(p)
	n.mountOp(ctx, "unmount", err, start)
	if err != nil {
		return fmt.Errorf("rdscsi: unmounting %s: %w", p, err)
	}
	return nil
}

// unmountAll removes every mount stacked on p, corrupted ones included.
func (n *NodeServer) unmountAll(ctx context.Context, p string) error {
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
		if err := n.unmount(ctx, p); err != nil {
			return err
		}
	}
	return fmt.Errorf("rdscsi: %s is still mounted after %d unmounts", p, maxStacked)
}

// statCleared stats p, first unmounting everything from it when its
// mount is corrupted (a dead device's file system), so the caller sees a
// path it can mount on again.
func (n *NodeServer) statCleared(ctx context.Context, p string) (pathState, error) {
	st, err := statPath(p)
	if err != nil || !st.corrupted {
		return st, err
	}
	if err := n.unmountAll(ctx, p); err != nil {
		return pathState{}, err
	}
	return statPath(p)
}
