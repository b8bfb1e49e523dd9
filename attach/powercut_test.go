package attach_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/internal/powercut"
)

// powerCutVolume is what a power-cut round knows of one volume: the node
// it was attached to when its last acknowledged operation returned, and
// the node an operation in flight at the cut would leave it on (that
// operation may or may not have become durable).
type powerCutVolume struct {
	acked    string // "" for detached
	inFlight *string
}

// powerCutStats is what TestFileStorePowerCut reports, for the
// reliability section of BENCHMARKS.md.
type powerCutStats struct {
	rounds, acked, inFlightKept, inFlightLost, compactions int
}

// TestFileStorePowerCut runs rounds of concurrent attaches and detaches
// on an attach.FileStore inside a file system that loses, at a power cut,
// everything not fsynced (internal/powercut). After each cut at a random
// moment the log is reopened from what a disk would hold: every
// acknowledged operation must be there, an operation in flight may be
// there or not but never as half a record, the log must never be
// ErrCorrupt (a torn tail is cut), and the counts must match. With torn
// writes too, in 512-byte and 4 KiB units.
func TestFileStorePowerCut(t *testing.T) {
	powercut.Require(t)
	const rounds, workers, volumesPerWorker = 40, 6, 4
	for _, tc := range []struct {
		torn    int
		compact bool
	}{{0, false}, {512, false}, {4096, false}, {0, true}, {4096, true}} {
		torn := tc.torn
		var storeOpts []attach.FileOption
		name := fmt.Sprintf("torn-%d", torn)
		if tc.compact {
			// The log is rewritten (temporary file, fsync, rename, fsync
			// of the directory) every few commits.
			storeOpts = append(storeOpts, attach.WithCompaction(2, 256))
			name += "-compacting"
		}
		t.Run(name, func(t *testing.T) {
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			r := rand.New(rand.NewPCG(seed, uint64(torn)))
			backing := t.TempDir()
			state := map[string]*powerCutVolume{}
			for w := range workers {
				for v := range volumesPerWorker {
					state[fmt.Sprintf("vol-%d-%d", w, v)] = &powerCutVolume{}
				}
			}
			var stats powerCutStats
			for round := range rounds {
				powerCutRound(t, backing, r, torn, storeOpts, round, workers, volumesPerWorker, state, &stats)
				if t.Failed() {
					return
				}
			}
			t.Logf("%s: %d rounds, %d acknowledged operations, none lost; of the operations in flight at a cut, %d were kept and %d lost",
				name, stats.rounds, stats.acked, stats.inFlightKept, stats.inFlightLost)
			if tc.compact && stats.compactions == 0 {
				t.Error("the log was never compacted")
			}
		})
	}
}

func powerCutRound(t *testing.T, backing string, r *rand.Rand, torn int, storeOpts []attach.FileOption, round, workers, perWorker int, state map[string]*powerCutVolume, stats *powerCutStats) {
	t.Helper()
	ctx := context.Background()
	opts := []powercut.Option{powercut.WithDeadMountAfterCut()}
	if torn > 0 {
		opts = append(opts, powercut.WithTornWrites(torn, rand.New(rand.NewPCG(r.Uint64(), r.Uint64()))))
	}
	mnt := t.TempDir()
	fs, err := powercut.Mount(backing, mnt, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// A clean unmount, or after the cut the detach of the dead mount.
		if err := fs.Unmount(); err != nil {
			t.Errorf("round %d: unmount: %v", round, err)
		}
	}()

	// Reopen: what the last round left on "disk".
	store, err := attach.NewFileStore(filepath.Join(mnt, "attachments.log"), storeOpts...)
	if err != nil {
		t.Fatalf("round %d: reopening after a power cut: %v", round, err)
	}
	m, err := attach.NewManager(ctx, store)
	if err != nil {
		store.Close()
		t.Fatalf("round %d: %v", round, err)
	}
	attached := 0
	for id, v := range state {
		got := ""
		if a, ok := m.Get(id); ok {
			if len(a.Nodes) != 1 {
				t.Errorf("round %d: %s has nodes %v", round, id, a.Nodes)
			}
			got = a.Nodes[0]
		}
		switch {
		case got == v.acked:
			if v.inFlight != nil && *v.inFlight != v.acked {
				stats.inFlightLost++
			}
		case v.inFlight != nil && got == *v.inFlight:
			stats.inFlightKept++
		default:
			t.Errorf("round %d: %s is on %q after the cut, acknowledged %q (in flight: %v)", round, id, got, v.acked, v.inFlight)
		}
		v.acked, v.inFlight = got, nil
		if got != "" {
			attached++
		}
	}
	if c := m.Counts(); c.Volumes != attached || c.NodeAttachments != attached || len(m.List()) != attached {
		t.Errorf("round %d: counts %+v and %d listed, want %d attachments", round, c, len(m.List()), attached)
	}
	if t.Failed() {
		m.Close()
		store.Close()
		return
	}

	// Concurrent operations until the power goes.
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range workers {
		wr := rand.New(rand.NewPCG(r.Uint64(), uint64(w)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("vol-%d-%d", w, wr.IntN(perWorker))
				mu.Lock()
				v := state[id]
				cur := v.acked
				mu.Unlock()
				next := ""
				if cur == "" {
					next = fmt.Sprintf("node-%d", wr.IntN(3))
				}
				mu.Lock()
				v.inFlight = &next
				mu.Unlock()
				var err error
				if next != "" {
					err = m.Attach(ctx, attach.Request{VolumeID: id, NodeID: next, Mode: attach.Exclusive})
				} else {
					err = m.Detach(ctx, id, cur)
				}
				mu.Lock()
				if err == nil {
					v.acked, v.inFlight = next, nil
					stats.acked++
				}
				mu.Unlock()
				if err != nil {
					// The power went: this operation stays in flight.
					return
				}
			}
		}()
	}
	time.Sleep(time.Duration(2+r.IntN(30)) * time.Millisecond)
	if err := fs.Cut(); err != nil {
		t.Fatalf("round %d: cut: %v", round, err)
	}
	close(stop)
	wg.Wait()
	m.Close()
	// Closing a store whose file system went away fails; that is not
	// what is checked.
	_ = store.Close()
	stats.rounds++
	stats.compactions += int(store.Stats().Compactions)
}

// mkdirNoSync creates dir as a careless caller would: its entry is not
// durable until its parent is synced.
func mkdirNoSync(dir string) error { return os.MkdirAll(dir, 0o700) }

// TestFileStoreFirstOpenAfterCut: a brand-new log in a directory whose
// own entry is not durable yet is lost whole by a power cut, as a log
// cut between its creation and the first fsync of its directory is; the
// first open after it starts empty and works.
func TestFileStoreFirstOpenAfterCut(t *testing.T) {
	ctx := context.Background()
	fs, backing, mnt := powercut.MountTemp(t, powercut.WithDeadMountAfterCut())
	// The store's directory is new too, as on a fresh node.
	dir := filepath.Join(mnt, "state")
	if err := mkdirNoSync(dir); err != nil {
		t.Fatal(err)
	}
	store, err := attach.NewFileStore(filepath.Join(dir, "attachments.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Cut(); err != nil {
		t.Fatal(err)
	}
	store.Close()
	if err := fs.Unmount(); err != nil {
		t.Fatal(err)
	}

	fs, err = powercut.Mount(backing, mnt)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Unmount()
	if err := mkdirNoSync(dir); err != nil {
		t.Fatal(err)
	}
	store, err = attach.NewFileStore(filepath.Join(dir, "attachments.log"))
	if err != nil {
		t.Fatalf("first open after the cut: %v", err)
	}
	defer store.Close()
	m, err := attach.NewManager(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if n := len(m.List()); n != 0 {
		t.Errorf("%d attachments in a store that never acknowledged one", n)
	}
	if err := m.Attach(ctx, attach.Request{VolumeID: "vol-1", NodeID: "node-1", Mode: attach.Exclusive}); err != nil {
		t.Fatalf("attach after the cut: %v", err)
	}
}
