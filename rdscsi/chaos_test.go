package rdscsi_test

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
	"github.com/srvlab/rds-csi/rdscsi"
)

var ctrlChaosSeed = flag.Uint64("chaos.seed", 0, "seed of TestChaos's fault choices; 0 picks one")

// ctrlChaosAttempts is how often the client tries a command (WithRetry):
// a connection dropped on that many tries in a row exhausts it.
const ctrlChaosAttempts = 3

// TestChaos runs 200 volume lifecycles (create, publish, unpublish,
// delete; every fourth with a snapshot, every eighth also restored) on 8
// workers. Before most steps a RouterOS fault is aimed at the commands that
// name the lifecycle's own disks: a failure text, an answer lost to a
// dropped connection, a connection lost on every try, a hung command, a
// slow one, or all connections dropped. The step's first attempt must
// end with the gRPC code of the fault's class (the table in errors.go), or
// succeed where the client or the controller recovers on its own; then
// the step is retried until it succeeds, as a CO does. Steps without a
// fault run beside the faults that break the shared connection and must
// succeed, or fail Unavailable when such a fault ran at the same time. At
// the end nothing may be left: no disks, no files in the fake's /file
// listing or data directory, no attachments.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test skipped with -short")
	}
	seed := *ctrlChaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("fault seed %d (repeat its fault choices with -chaos.seed=%d)", seed, seed)
	c := &ctrlChaos{t: t, seed: seed, calls: newCtrlChaosCalls(), asserted: map[string]int{}}
	c.e = newCtrlTestEnv(t, ctrlTestConfig{
		// Faults are aimed at the commands naming one lifecycle's disks,
		// so each read sends its own print: a coalesced print would carry
		// one lifecycle's fault to the reads of others. What a failing
		// coalesced print does to its readers is tested in rdsclient.
		clientOpts: []rdsclient.Option{rdsclient.WithRetry(ctrlChaosAttempts, time.Millisecond), rdsclient.WithCoalescedReads(1)},
		intercept:  c.calls.intercept,
	})

	const lifecycles, workers = 200, 8
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if c.failed.Load() {
					continue
				}
				if err := c.lifecycle(i); err != nil {
					c.failed.Store(true)
					t.Errorf("lifecycle %d: %v", i, err)
				}
			}
		}()
	}
	for i := 0; i < lifecycles; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	t.Logf("first attempts checked per fault: %v; %d RPCs retried; %d steps without a fault ran beside a dropped connection, %d of them failed Unavailable",
		c.asserted, c.retries.Load(), c.overlapped.Load(), c.overlapFailed.Load())
	if c.failed.Load() {
		return
	}
	// The fault choices depend on the seed only; with 200 lifecycles every
	// fault is chosen many times over.
	for _, f := range ctrlChaosFaults {
		if c.asserted[f.name] == 0 {
			t.Errorf("fault %q was never checked", f.name)
		}
	}

	// Nothing left behind.
	e := c.e
	if s := e.diskSlots(t, "pvc-"); len(s) != 0 {
		t.Errorf("orphan volumes: %v", s)
	}
	if s := e.diskSlots(t, "snap-"); len(s) != 0 {
		t.Errorf("orphan snapshots: %v", s)
	}
	if f := e.fileNames(t, "storage-pool"); len(f) != 0 {
		t.Errorf("orphan files in /file: %v", f)
	}
	var hostFiles []string
	filepath.WalkDir(e.rds.DataDir(), func(p string, d fs.DirEntry, err error) error {
		// Dot files are the fake's own bookkeeping (its state file);
		// backing files are named pvc-... and snap-....
		if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			hostFiles = append(hostFiles, p)
		}
		return nil
	})
	if len(hostFiles) != 0 {
		t.Errorf("orphan files in the data dir: %v", hostFiles)
	}
	if c := e.manager.Counts(); c != (attach.Counts{}) {
		t.Errorf("attachments left: %+v %v", c, e.manager.List())
	}
}

// ctrlChaosCmds is a set of the kinds of RouterOS commands a step sends
// naming its disks.
type ctrlChaosCmds uint8

const (
	ctrlChaosPrint      ctrlChaosCmds = 1 << iota // /disk print
	ctrlChaosAdd                                  // /disk add, blank or copy-from
	ctrlChaosRemove                               // /disk remove
	ctrlChaosFileRemove                           // /file remove of a backing file
)

// ctrlChaosFault is a fault a step may meet. It is aimed at the commands
// naming the lifecycle's disks, so no other lifecycle's call meets it.
type ctrlChaosFault struct {
	name string
	// on: chosen only for steps that send one of these commands; 0 for
	// any step.
	on ctrlChaosCmds
	// want is the code of the step's first attempt: the code of the
	// fault's class in errors.go, or OK where the client or the
	// controller recovers by itself.
	want codes.Code
	// wantOn overrides want for some steps, by step name.
	wantOn map[string]codes.Code
	// disrupts: the fault breaks the SSH connection all calls share, or
	// may (an abandoned hung command whose session does not end in time
	// costs the connection), so it never runs beside another step's
	// checked first attempt.
	disrupts bool
	// deadline, if set, is the CO's deadline for the first attempt.
	deadline time.Duration
	// inject arms the fault for commands matching ids, a regexp of the
	// lifecycle's disk slots, and returns what disarms it.
	inject func(s *rdstest.Server, ids string, r *rand.Rand) (remove func())
}

// ctrlChaosFail makes the first command of kind cmd naming the disks fail
// with text.
func ctrlChaosFail(cmd, text string) func(*rdstest.Server, string, *rand.Rand) func() {
	return func(s *rdstest.Server, ids string, _ *rand.Rand) func() {
		return s.Inject(rdstest.FailNth(cmd+".*"+ids, 1, text))
	}
}

// ctrlChaosFaults are the faults of TestChaos. Failure texts are what the
// device prints for each kind of command: a print never fails with "no
// such item" (a miss is an empty listing), so that is not injected there.
var ctrlChaosFaults = []ctrlChaosFault{
	{name: "none", want: codes.OK},
	{name: "slow commands", want: codes.OK,
		inject: func(s *rdstest.Server, ids string, r *rand.Rand) func() {
			return s.Inject(rdstest.Latency(ids, time.Duration(1+r.IntN(20))*time.Millisecond))
		}},
	{name: "full pool", on: ctrlChaosAdd, want: codes.ResourceExhausted,
		inject: ctrlChaosFail(`^/disk add `, "failure: not enough space")},
	{name: "unknown add failure", on: ctrlChaosAdd, want: codes.Internal,
		inject: ctrlChaosFail(`^/disk add `, "something nobody has seen before")},
	// No disk has the slot: something else is in the way, such as a
	// backing file left by an attempt that died. CreateVolume and
	// CreateSnapshot remove such files when no disk uses them and add
	// again.
	{name: "add finds a name taken", on: ctrlChaosAdd, want: codes.OK,
		inject: ctrlChaosFail(`^/disk add `, "failure: item with this name already exists")},
	{name: "disk in use", on: ctrlChaosRemove, want: codes.FailedPrecondition,
		inject: ctrlChaosFail(`^/disk remove `, "failure: disk is in use")},
	// "No such item" while the disk is still listed is output the
	// client cannot trust.
	{name: "remove claims no such disk", on: ctrlChaosRemove, want: codes.Internal,
		inject: ctrlChaosFail(`^/disk remove `, "failure: no such item")},
	// A failed removal of the backing file, once the disk is gone, is
	// tried once more at once.
	{name: "file in use", on: ctrlChaosFileRemove, want: codes.OK,
		inject: ctrlChaosFail(`^/file remove `, "failure: file is in use")},
	{name: "unknown file remove failure", on: ctrlChaosFileRemove, want: codes.OK,
		inject: ctrlChaosFail(`^/file remove `, "something nobody has seen before")},
	{name: "print syntax error", on: ctrlChaosPrint, want: codes.InvalidArgument,
		inject: ctrlChaosFail(`^/disk print `, "syntax error (line 1 column 7)")},
	{name: "unknown print failure", on: ctrlChaosPrint, want: codes.Internal,
		inject: ctrlChaosFail(`^/disk print `, "something nobody has seen before")},
	// The command runs and its answer is lost: the client reads the disk
	// back (mutations) or asks again (prints).
	{name: "answer lost after a change", on: ctrlChaosAdd | ctrlChaosRemove | ctrlChaosFileRemove, want: codes.OK, disrupts: true,
		inject: func(s *rdstest.Server, ids string, _ *rand.Rand) func() {
			return s.Inject(rdstest.DropAfterRun(`^/(disk add|disk remove|file remove) .*`+ids, 1))
		}},
	{name: "answer lost after a print", on: ctrlChaosPrint, want: codes.OK, disrupts: true,
		inject: func(s *rdstest.Server, ids string, _ *rand.Rand) func() {
			return s.Inject(rdstest.DropAfterRun(`^/disk print .*`+ids, 1))
		}},
	// Every step it is chosen for starts with a print, which the client
	// tries ctrlChaosAttempts times.
	{name: "connection lost on every try", on: ctrlChaosPrint, want: codes.Unavailable, disrupts: true,
		inject: func(s *rdstest.Server, ids string, _ *rand.Rand) func() {
			var removes []func()
			for n := 1; n <= ctrlChaosAttempts; n++ {
				removes = append(removes, s.Inject(rdstest.DropAfterRun(ids, n)))
			}
			return func() {
				for _, rm := range removes {
					rm()
				}
			}
		}},
	{name: "connections dropped", want: codes.OK, disrupts: true,
		inject: func(s *rdstest.Server, _ string, _ *rand.Rand) func() {
			s.DropConnections()
			return func() {}
		}},
	{name: "device hangs", on: ctrlChaosPrint, want: codes.DeadlineExceeded, disrupts: true, deadline: 50 * time.Millisecond,
		inject: func(s *rdstest.Server, ids string, _ *rand.Rand) func() {
			return s.Inject(rdstest.Hang(ids))
		}},
}

// ctrlChaos is the state of one TestChaos run.
type ctrlChaos struct {
	t     *testing.T
	e     *ctrlTestEnv
	seed  uint64
	calls *ctrlChaosCalls

	// gate is held by a step with a disrupting fault for the whole step,
	// and shared by the first attempts of steps with other faults.
	gate  sync.RWMutex
	drops ctrlChaosDrops

	failed        atomic.Bool
	retries       atomic.Int64
	overlapped    atomic.Int64
	overlapFailed atomic.Int64

	mu       sync.Mutex
	asserted map[string]int // first attempts checked, by fault name
}

// ctrlChaosStep is one RPC of a lifecycle.
type ctrlChaosStep struct {
	name string
	cmds ctrlChaosCmds
	do   func(ctx context.Context) error
}

// lifecycle runs volume i's life. Its fault choices come from a source
// seeded with the seed and i, so that a seed replays them whatever the
// interleaving.
func (c *ctrlChaos) lifecycle(i int) error {
	r := rand.New(rand.NewPCG(c.seed, uint64(i)))
	e := c.e
	vc := ctrlTestRWO
	if i%2 == 1 {
		vc = ctrlTestBlockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	}
	node := fmt.Sprintf("node-%d", i%5)
	name, snapName, restoredName := fmt.Sprintf("chaos-%d", i), fmt.Sprintf("chaos-snap-%d", i), fmt.Sprintf("chaos-restored-%d", i)
	volID, snapID, restoredID := rdscsi.VolumeIDForName(name), rdscsi.SnapshotIDForName(snapName), rdscsi.VolumeIDForName(restoredName)
	ids := "(?:" + regexp.QuoteMeta(volID) + "|" + regexp.QuoteMeta(snapID) + "|" + regexp.QuoteMeta(restoredID) + ")"

	const deletion = ctrlChaosPrint | ctrlChaosRemove | ctrlChaosFileRemove
	var vol *csi.Volume
	steps := []ctrlChaosStep{
		// A new blank volume costs one add; prints follow only a refusal.
		{"create", ctrlChaosAdd, func(ctx context.Context) error {
			resp, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq(name, int64(8+i%3)*ctrlTestMiB, vc))
			vol = resp.GetVolume()
			return err
		}},
		{"publish", ctrlChaosPrint, func(ctx context.Context) error {
			_, err := e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
				VolumeId: vol.VolumeId, NodeId: node, VolumeCapability: vc, VolumeContext: vol.VolumeContext})
			return err
		}},
	}
	if i%4 == 0 {
		steps = append(steps, ctrlChaosStep{"snapshot", ctrlChaosPrint | ctrlChaosAdd, func(ctx context.Context) error {
			_, err := e.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: snapName, SourceVolumeId: vol.VolumeId})
			return err
		}})
	}
	if i%8 == 0 {
		steps = append(steps, ctrlChaosStep{"restore", ctrlChaosPrint | ctrlChaosAdd, func(ctx context.Context) error {
			req := ctrlTestCreateReq(restoredName, 0, vc)
			req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
				Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snapID}}}
			_, err := e.cc.CreateVolume(ctx, req)
			return err
		}}, ctrlChaosStep{"delete restored", deletion, func(ctx context.Context) error {
			_, err := e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: restoredID})
			return err
		}})
	}
	steps = append(steps, ctrlChaosStep{"unpublish", 0, func(ctx context.Context) error {
		_, err := e.cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: volID, NodeId: node})
		return err
	}})
	// Half the snapshots outlive their volume.
	deleteSnap := ctrlChaosStep{"delete snapshot", deletion, func(ctx context.Context) error {
		_, err := e.cc.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snapID})
		return err
	}}
	deleteVol := ctrlChaosStep{"delete", deletion, func(ctx context.Context) error {
		_, err := e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: volID})
		return err
	}}
	switch {
	case i%4 != 0:
		steps = append(steps, deleteVol)
	case i%3 == 0:
		steps = append(steps, deleteSnap, deleteVol)
	default:
		steps = append(steps, deleteVol, deleteSnap)
	}

	keys := []string{volID, snapID, restoredID}
	for _, s := range steps {
		f := ctrlChaosPick(r, s)
		if err := c.step(i, s, f, ids, keys, r); err != nil {
			return fmt.Errorf("%s (fault %q): %w", s.name, f.name, err)
		}
	}
	return nil
}

// ctrlChaosPick chooses a step's fault: none for a quarter of the steps,
// else any that applies to the commands it sends.
func ctrlChaosPick(r *rand.Rand, s ctrlChaosStep) *ctrlChaosFault {
	if r.IntN(4) == 0 {
		return &ctrlChaosFaults[0]
	}
	var fit []*ctrlChaosFault
	for i := range ctrlChaosFaults[1:] {
		f := &ctrlChaosFaults[1+i]
		if f.on == 0 || f.on&s.cmds != 0 {
			fit = append(fit, f)
		}
	}
	return fit[r.IntN(len(fit))]
}

// step runs one step with fault f: its first attempt, checked, then
// retries until it succeeds.
func (c *ctrlChaos) step(i int, s ctrlChaosStep, f *ctrlChaosFault, ids string, keys []string, r *rand.Rand) error {
	want := f.want
	if w, ok := f.wantOn[s.name]; ok {
		want = w
	}
	var err error
	switch {
	case f.inject == nil:
		// Unguarded: a disrupting fault of another lifecycle may drop
		// the connection under this call.
		w := c.drops.watch()
		err = s.do(context.Background())
		if w.overlapped() {
			c.overlapped.Add(1)
			if status.Code(err) == codes.Unavailable {
				c.overlapFailed.Add(1)
				want = codes.Unavailable
			}
		}
	case f.disrupts:
		c.gate.Lock()
		defer c.gate.Unlock()
		c.drops.begin()
		defer c.drops.end()
		err = c.first(s, f, ids, r)
	default:
		c.gate.RLock()
		err = c.first(s, f, ids, r)
		c.gate.RUnlock()
	}
	if got := status.Code(err); got != want {
		c.t.Errorf("seed %d, lifecycle %d, %s with fault %q: first attempt got %v, want %v (err: %v)",
			c.seed, i, s.name, f.name, got, want, err)
	}
	c.mu.Lock()
	c.asserted[f.name]++
	c.mu.Unlock()

	for attempt := 1; err != nil; attempt++ {
		if attempt > 300 {
			return fmt.Errorf("still failing after %d attempts: %w", attempt-1, err)
		}
		if status.Code(err) == codes.Aborted {
			// An abandoned attempt still holds the volume: go on once
			// the server is done with it.
			c.calls.wait(keys)
		}
		c.retries.Add(1)
		err = s.do(context.Background())
	}
	return nil
}

// first makes the first attempt of step s with fault f armed.
func (c *ctrlChaos) first(s ctrlChaosStep, f *ctrlChaosFault, ids string, r *rand.Rand) error {
	remove := f.inject(c.e.rds, ids, r)
	defer remove()
	ctx := context.Background()
	if f.deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.deadline)
		defer cancel()
	}
	return s.do(ctx)
}

// ctrlChaosDrops tells whether a disrupting fault ran during a call.
type ctrlChaosDrops struct {
	active atomic.Int64  // disrupting steps running
	gen    atomic.Uint64 // disrupting steps begun
}

func (d *ctrlChaosDrops) begin() { d.active.Add(1); d.gen.Add(1) }
func (d *ctrlChaosDrops) end()   { d.active.Add(-1) }

// watch starts watching for disrupting faults; call overlapped on the
// result once the call has returned.
func (d *ctrlChaosDrops) watch() ctrlChaosWatch {
	g := d.gen.Load() // before active: a step begun in between changes gen
	return ctrlChaosWatch{d: d, gen: g, active: d.active.Load() > 0}
}

type ctrlChaosWatch struct {
	d      *ctrlChaosDrops
	gen    uint64
	active bool
}

func (w ctrlChaosWatch) overlapped() bool { return w.active || w.d.gen.Load() != w.gen }

// ctrlChaosCalls tracks the disks named by the calls the server is
// running, so that a retry after an abandoned call waits for the
// server to finish it instead of guessing how long that takes.
type ctrlChaosCalls struct {
	mu   sync.Mutex
	idle *sync.Cond
	busy map[string]int
}

func newCtrlChaosCalls() *ctrlChaosCalls {
	c := &ctrlChaosCalls{busy: map[string]int{}}
	c.idle = sync.NewCond(&c.mu)
	return c
}

// intercept is a grpc.UnaryServerInterceptor; first in the chain, it
// sees a call end after the serializer has let go of its keys.
func (c *ctrlChaosCalls) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ids := ctrlChaosRequestIDs(req)
	c.mu.Lock()
	for _, id := range ids {
		c.busy[id]++
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		for _, id := range ids {
			if c.busy[id]--; c.busy[id] == 0 {
				delete(c.busy, id)
			}
		}
		c.mu.Unlock()
		c.idle.Broadcast()
	}()
	return handler(ctx, req)
}

// wait blocks until the server runs no call naming any of ids.
func (c *ctrlChaosCalls) wait(ids []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		busy := false
		for _, id := range ids {
			busy = busy || c.busy[id] > 0
		}
		if !busy {
			return
		}
		c.idle.Wait()
	}
}

// ctrlChaosRequestIDs returns the volume and snapshot IDs a request names.
func ctrlChaosRequestIDs(req any) []string {
	var ids []string
	switch r := req.(type) {
	case *csi.CreateVolumeRequest:
		ids = append(ids, rdscsi.VolumeIDForName(r.GetName()))
		if src := r.GetVolumeContentSource(); src != nil {
			ids = append(ids, src.GetSnapshot().GetSnapshotId(), src.GetVolume().GetVolumeId())
		}
	case *csi.CreateSnapshotRequest:
		ids = append(ids, rdscsi.SnapshotIDForName(r.GetName()), r.GetSourceVolumeId())
	case interface{ GetVolumeId() string }:
		ids = append(ids, r.GetVolumeId())
	case interface{ GetSnapshotId() string }:
		ids = append(ids, r.GetSnapshotId())
	}
	return ids
}
