package rdscsi

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	utilexec "k8s.io/utils/exec"
)

// kernelOps keeps a volume busy while a kernel operation on it runs.
//
// Mount, umount and the resize tools cannot be cancelled: mount-utils
// runs mount and umount without a ctx, and a process stuck in the kernel
// (a umount flushing to a dead NVMe device waits until the controller
// gives up, ctrl_loss_tmo) cannot be killed before the kernel lets go. So
// each such operation runs in a goroutine of its own, and the call waits
// for it or for its ctx, whichever ends first. When ctx ends first, the
// call returns with ctx's error and abandons the operation: the goroutine
// stays until the syscall or process returns, then records the outcome
// (metric and log) and ends. Commands that take a ctx are also killed
// then, which ends them at once unless they are stuck in the kernel.
//
// The policy for abandoned operations: the volume's lock is not released
// when the call returns but when the last operation the call started has
// ended, so every other call on the volume gets Aborted meanwhile rather
// than race an unmount or resize still in the kernel (a late umount of a
// path would remove what a new stage had mounted there). What an abandoned
// operation did is left for the next call on the volume to find, as after
// a crash: stage and publish accept what they find mounted from the right
// device, and unstage and unpublish what is already gone.
type kernelOps struct {
	mu      sync.Mutex
	running map[string]int    // volume ID: operations not yet ended
	unlock  map[string]func() // volume ID: lock of a call that returned while they ran
}

func (k *kernelOps) begin(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.running == nil {
		k.running = map[string]int{}
	}
	k.running[id]++
}

// end marks one operation on id ended, and releases the volume when it
// was the last one of a call that has returned.
func (k *kernelOps) end(id string) {
	k.mu.Lock()
	k.running[id]--
	var unlock func()
	if k.running[id] == 0 {
		delete(k.running, id)
		unlock = k.unlock[id]
		delete(k.unlock, id)
	}
	k.mu.Unlock()
	if unlock != nil {
		unlock()
	}
}

// release is called when the call holding id's lock returns: it unlocks
// now, or hands the unlock to the last running operation.
func (k *kernelOps) release(id string, unlock func()) {
	k.mu.Lock()
	if k.running[id] == 0 {
		k.mu.Unlock()
		unlock()
		return
	}
	if k.unlock == nil {
		k.unlock = map[string]func(){}
	}
	// One call holds id's lock at a time, so there is no other.
	k.unlock[id] = unlock
	k.mu.Unlock()
}

// lockVolume wraps the unlock of a volume lock so that it honours running
// kernel operations (see kernelOps). The result may be called twice.
func (n *NodeServer) lockVolume(id string, unlock func()) func() {
	var once sync.Once
	return func() { once.Do(func() { n.kernel.release(id, unlock) }) }
}

// abandonedError is returned by a call whose ctx ended while a kernel
// operation it started was still running: what the operation did is not
// known yet. It wraps ctx's error, so the call ends with DeadlineExceeded
// or Canceled.
type abandonedError struct {
	op  string
	err error
}

func (e *abandonedError) Error() string {
	return fmt.Sprintf("rdscsi: %s still running when the call ended; the volume stays busy until it ends: %v", e.op, e.err)
}

func (e *abandonedError) Unwrap() error { return e.err }

// abandoned reports whether err says that an operation was abandoned:
// the caller must then leave alone what the operation may still change.
func abandoned(err error) bool {
	var a *abandonedError
	return errors.As(err, &a)
}

// startOp runs op, a kernel operation on volume id, in a goroutine and
// returns the channel its error arrives on (buffered: the goroutine never
// waits for a reader). name is the metric's operation.
func (n *NodeServer) startOp(ctx context.Context, id, name string, op func() error) <-chan error {
	n.kernel.begin(id)
	done := make(chan error, 1)
	start := time.Now()
	octx := context.WithoutCancel(ctx)
	go func() {
		err := op()
		n.kernel.end(id)
		n.mountOp(octx, name, err, start)
		if ctx.Err() != nil {
			n.o.logger.WarnContext(octx, "operation ended after its call gave up", "op", name, "volume", id, "err", err)
		}
		done <- err
	}()
	return done
}

// waitOp waits for an operation started by startOp, or for ctx.
func waitOp(ctx context.Context, done <-chan error, what string) error {
	select {
	case err := <-done:
		return withCtxErr(ctx, err)
	case <-ctx.Done():
		select {
		case err := <-done: // it ended too: prefer what it did
			return withCtxErr(ctx, err)
		default:
		}
		return &abandonedError{op: what, err: ctx.Err()}
	}
}

// withCtxErr makes an operation's failure say that ctx ended, when it
// did: a command killed by its ctx fails with "signal: killed".
func withCtxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	return err
}

// runOp runs op as a kernel operation on volume id and waits for it or
// for ctx.
func (n *NodeServer) runOp(ctx context.Context, id, name, what string, op func() error) error {
	return waitOp(ctx, n.startOp(ctx, id, name, op), what)
}

// ctxExec runs every command under ctx, for code that calls Command
// without one (mount-utils' ResizeFs): the command is killed when ctx
// ends.
type ctxExec struct {
	ctx context.Context
	utilexec.Interface
}

func (e ctxExec) Command(cmd string, args ...string) utilexec.Cmd {
	return e.Interface.CommandContext(e.ctx, cmd, args...)
}
