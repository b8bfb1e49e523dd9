package rdscsitest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/srvlab/rds-csi/rdsclient/rdstest"
	"github.com/srvlab/rds-csi/rdscsi/nvme"
)

// LoopConnector is an nvme.Connector for tests and simulations on Linux:
// instead of NVMe/TCP, it attaches the backing file of a disk exported by
// an rdstest.Server to a loop device with losetup, so a NodeServer
// formats, mounts and grows real block devices. Like nvme.TCPConnector it
// resolves the device afresh on every call (losetup -j on the backing
// file), is idempotent, and touches only NQNs with nvme.DefaultNQNPrefix
// (anything else fails with nvme.ErrForeign). It also implements
// nvme.Rescanner (losetup -c). It needs root and /dev/loop-control.
//
// A connector is one host: the first Connect of an NQN counts one
// initiator on the Server (rdstest.Server.ConnectInitiator), so the disk
// cannot be removed until Disconnect has released the loop device. Connectors do
// not know of each other: one connector's Disconnect detaches every loop
// device of the backing file, another connector's included.
//
// Call Close when done: it detaches every loop device it attached.
type LoopConnector struct {
	s       *rdstest.Server
	timeout time.Duration

	mu sync.Mutex // serializes losetup calls and guards files
	// files maps each NQN this connector holds an initiator connection
	// for to its backing file, which stays known after the fake forgets
	// it (Server closed).
	files map[string]string
}

var (
	_ nvme.Connector = (*LoopConnector)(nil)
	_ nvme.Rescanner = (*LoopConnector)(nil)
)

// loopNQNPrefix is the prefix the real connector manages by default.
const loopNQNPrefix = nvme.DefaultNQNPrefix

// NewLoopConnector returns a LoopConnector for the disks of s.
func NewLoopConnector(s *rdstest.Server) *LoopConnector {
	return &LoopConnector{s: s, timeout: 10 * time.Second, files: map[string]string{}}
}

func checkLoopNQN(nqn string) error {
	if !strings.HasPrefix(nqn, loopNQNPrefix) || len(nqn) == len(loopNQNPrefix) {
		return fmt.Errorf("%w: rdscsitest: %q (prefix %s)", nvme.ErrForeign, nqn, loopNQNPrefix)
	}
	return nil
}

// Connect attaches the backing file of the disk exported as t.NQN, unless
// a loop device already has it, and returns the loop device. The first
// Connect of an NQN also marks it connected on the Server; a failed one
// leaves no mark.
func (c *LoopConnector) Connect(ctx context.Context, t nvme.Target) (string, error) {
	if err := checkLoopNQN(t.NQN); err != nil {
		return "", err
	}
	file, err := c.s.BackingFile(t.NQN)
	if err != nil {
		return "", fmt.Errorf("rdscsitest: connect %s: %w", t.NQN, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, held := c.files[t.NQN]
	if !held {
		// Marked before attaching, so that the disk cannot be removed
		// between the two.
		if err := c.s.ConnectInitiator(t.NQN); err != nil {
			return "", fmt.Errorf("rdscsitest: connect %s: %w", t.NQN, err)
		}
	}
	dev, err := c.attach(ctx, file)
	if err != nil {
		if !held {
			c.s.DisconnectInitiator(t.NQN)
		}
		return "", err
	}
	c.files[t.NQN] = file
	return dev, nil
}

// attach returns a loop device of file, attaching one if none has it.
func (c *LoopConnector) attach(ctx context.Context, file string) (string, error) {
	devs, err := loopsOf(ctx, file)
	if err != nil {
		return "", err
	}
	if len(devs) > 0 {
		return devs[0], nil
	}
	out, err := losetup(ctx, "--find", "--show", file)
	if err != nil {
		return "", err
	}
	dev := strings.TrimSpace(out)
	if !strings.HasPrefix(dev, "/dev/loop") {
		return "", fmt.Errorf("rdscsitest: losetup printed %q", out)
	}
	// The node appears with the device; wait briefly for slow devtmpfs.
	if err := waitFor(ctx, c.timeout, func() (bool, error) {
		_, err := os.Stat(dev)
		return err == nil, nil
	}); err != nil {
		return "", fmt.Errorf("rdscsitest: waiting for %s: %w", dev, err)
	}
	return dev, nil
}

// file returns the backing file of nqn: the fake's, or the one this
// connector attached (the fake may have forgotten it).
func (c *LoopConnector) file(nqn string) (string, bool) {
	if f, err := c.s.BackingFile(nqn); err == nil {
		return f, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.files[nqn]
	return f, ok
}

// Device returns the loop device holding the backing file of nqn, or an
// error wrapping nvme.ErrNotConnected.
func (c *LoopConnector) Device(ctx context.Context, nqn string) (string, error) {
	if err := checkLoopNQN(nqn); err != nil {
		return "", err
	}
	file, ok := c.file(nqn)
	if !ok {
		return "", fmt.Errorf("%w: rdscsitest: no disk exported as %s", nvme.ErrNotConnected, nqn)
	}
	devs, err := loopsOf(ctx, file)
	if err != nil {
		return "", err
	}
	if len(devs) == 0 {
		return "", fmt.Errorf("%w: rdscsitest: %s is not attached", nvme.ErrNotConnected, nqn)
	}
	return devs[0], nil
}

// Disconnect detaches every loop device of nqn's backing file and returns
// once none is left; only then does it drop this connector's initiator
// connection on the Server. A device still in use (mounted) is only
// marked for auto-clear by the kernel, so Disconnect then fails after its
// timeout and the disk stays in use.
func (c *LoopConnector) Disconnect(ctx context.Context, nqn string) error {
	if err := checkLoopNQN(nqn); err != nil {
		return err
	}
	file, ok := c.file(nqn)
	if !ok {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := detachAll(ctx, file, c.timeout); err != nil {
		return err
	}
	c.release(nqn)
	return nil
}

// release drops the initiator connection held for nqn, if any; the
// caller holds c.mu.
func (c *LoopConnector) release(nqn string) {
	if _, held := c.files[nqn]; held {
		c.s.DisconnectInitiator(nqn)
		delete(c.files, nqn)
	}
}

// Rescan makes the loop device of nqn pick up a grown backing file.
func (c *LoopConnector) Rescan(ctx context.Context, nqn string) error {
	dev, err := c.Device(ctx, nqn)
	if err != nil {
		return err
	}
	_, err = losetup(ctx, "--set-capacity", dev)
	return err
}

// Close detaches every loop device this connector attached and drops
// their initiator connections. A device it cannot detach (still mounted)
// keeps its connection, as a host that failed to disconnect does, and is
// reported in the error; Close may be called again.
func (c *LoopConnector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for nqn, file := range c.files {
		if err := detachAll(context.Background(), file, c.timeout); err != nil {
			errs = append(errs, err)
			continue
		}
		c.release(nqn)
	}
	return errors.Join(errs...)
}

func detachAll(ctx context.Context, file string, timeout time.Duration) error {
	devs, err := loopsOf(ctx, file)
	if err != nil {
		return err
	}
	// Loops whose file was removed meanwhile (the disk was deleted on
	// the fake) are ours too.
	devs = append(devs, deletedLoopsOf(file)...)
	for _, d := range devs {
		if _, err := losetup(ctx, "--detach", d); err != nil {
			return err
		}
	}
	var left []string
	err = waitFor(ctx, timeout, func() (bool, error) {
		var err error
		left, err = loopsOf(ctx, file)
		left = append(left, deletedLoopsOf(file)...)
		return len(left) == 0, err
	})
	if err != nil {
		return fmt.Errorf("rdscsitest: %s still attached to %v (in use?): %w", file, left, err)
	}
	return nil
}

// loopsOf lists the loop devices attached to file, resolved by its inode.
func loopsOf(ctx context.Context, file string) ([]string, error) {
	if _, err := os.Stat(file); err != nil {
		// A removed file can still be attached, but losetup -j cannot
		// find it by name any more; report nothing attached.
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("rdscsitest: %w", err)
	}
	out, err := losetup(ctx, "--associated", file)
	if err != nil {
		return nil, err
	}
	var devs []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		// "/dev/loop3: [2049]:1234 (/path/to/file)"
		if dev, _, ok := strings.Cut(sc.Text(), ":"); ok && strings.HasPrefix(dev, "/dev/loop") {
			devs = append(devs, dev)
		}
	}
	return devs, nil
}

// deletedLoopsOf lists the loop devices still attached to file after it
// was removed; the kernel shows their backing file as "<path> (deleted)".
func deletedLoopsOf(file string) []string {
	paths, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var devs []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err == nil && strings.TrimSpace(string(b)) == file+" (deleted)" {
			devs = append(devs, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(p))))
		}
	}
	return devs
}

func losetup(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "losetup", args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("rdscsitest: losetup %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// waitFor polls cond until it holds, bounded by ctx and timeout.
func waitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
