package attach_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/attach/attachtest"
)

// shadow rebuilds each volume's nodes from events. Events of one volume
// arrive in order, so it sees every intermediate state and can check the
// limits at every moment.
type shadow struct {
	mu         sync.Mutex
	nodes      map[string][]string
	violations []string
}

func (s *shadow) observe(e attach.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.nodes[e.VolumeID]
	switch e.Kind {
	case attach.EventAttached:
		if slices.Contains(cur, e.NodeID) {
			s.violations = append(s.violations, fmt.Sprintf("%s attached twice to %s", e.NodeID, e.VolumeID))
		}
		cur = append(slices.Clone(cur), e.NodeID)
	case attach.EventDetached, attach.EventReconciled:
		if !slices.Contains(cur, e.NodeID) {
			s.violations = append(s.violations, fmt.Sprintf("%s detached from %s but not attached", e.NodeID, e.VolumeID))
		}
		cur = slices.DeleteFunc(slices.Clone(cur), func(n string) bool { return n == e.NodeID })
	default:
		return
	}
	if limit := volumeLimit(e.VolumeID); len(cur) > limit {
		s.violations = append(s.violations, fmt.Sprintf("%s on %v, limit %d", e.VolumeID, cur, limit))
	}
	s.nodes[e.VolumeID] = cur
}

const stressVolumes = 50

func volumeMode(vol string) attach.Mode {
	var n int
	fmt.Sscanf(vol, "pvc-%d", &n)
	if n%2 == 0 {
		return attach.Exclusive
	}
	return attach.Migratable
}

func volumeLimit(vol string) int {
	if volumeMode(vol) == attach.Exclusive {
		return 1
	}
	return 2
}

// 1000 goroutines attach and detach at random on 50 volumes while the
// clock runs and migrations time out. At no moment may an exclusive volume
// have two nodes or a migratable one three, and afterwards Counts must
// match List.
func TestConcurrentAttachDetach(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  int
		open func(t *testing.T) attach.Store
	}{
		{"MemStore", 20, func(*testing.T) attach.Store { return attach.NewMemStore() }},
		{"FileStore", 10, func(t *testing.T) attach.Store {
			s := openFileStore(t, tempLog(t), attach.WithCompaction(2, 64<<10))
			t.Cleanup(func() { s.Close() })
			return s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeak(t)
			runStress(t, tc.open(t), tc.ops)
		})
	}
}

func runStress(t *testing.T, store attach.Store, opsPerGoroutine int) {
	ctx := context.Background()
	var now atomic.Int64 // nanoseconds after t0, moved by a ticker goroutine
	clock := func() time.Time { return t0.Add(time.Duration(now.Load())) }
	sh := &shadow{nodes: map[string][]string{}}
	var timedOut atomic.Int64
	m := newManager(t, store, attach.WithClock(clock), attach.WithObserver(func(e attach.Event) {
		sh.observe(e)
		if e.Kind == attach.EventMigrationTimedOut {
			timedOut.Add(1)
		}
	}))

	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() { // the clock
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				now.Add(int64(time.Second))
			}
		}
	})
	var checkerErr atomic.Value
	bg.Go(func() { // reads every volume continuously
		for {
			select {
			case <-stop:
				return
			default:
			}
			for i := range stressVolumes {
				vol := fmt.Sprintf("pvc-%d", i)
				a, ok := m.Get(vol)
				if ok && (len(a.Nodes) > volumeLimit(vol) || len(a.Nodes) == 0 || a.Mode != volumeMode(vol)) {
					checkerErr.Store(fmt.Sprintf("Get(%s) = %+v", vol, a))
				}
			}
			m.Counts()
		}
	})

	var counts sync.Map // error class -> count
	var wg sync.WaitGroup
	for g := range 1000 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 42))
			for range opsPerGoroutine {
				vol := fmt.Sprintf("pvc-%d", rng.IntN(stressVolumes))
				node := fmt.Sprintf("node-%d", rng.IntN(6))
				var err error
				if rng.IntN(5) < 3 {
					err = m.Attach(ctx, attach.Request{VolumeID: vol, NodeID: node, Mode: volumeMode(vol),
						MigrationTimeout: time.Duration(rng.IntN(30)) * time.Second})
				} else {
					err = m.Detach(ctx, vol, node)
				}
				class := "ok"
				for _, sentinel := range []error{attach.ErrConflict, attach.ErrMigrationLimit, attach.ErrMigrationTimedOut} {
					if errors.Is(err, sentinel) {
						class = sentinel.Error()
					}
				}
				if class == "ok" && err != nil {
					t.Errorf("unexpected error: %v", err)
					return
				}
				n, _ := counts.LoadOrStore(class, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		})
	}
	wg.Wait()
	close(stop)
	bg.Wait()

	if v := checkerErr.Load(); v != nil {
		t.Fatalf("checker saw an impossible state: %s", v)
	}
	if len(sh.violations) > 0 {
		t.Fatalf("%d violations, first: %s", len(sh.violations), sh.violations[0])
	}
	list := m.List()
	if c, want := m.Counts(), countsOf(list, clock()); c != want {
		t.Fatalf("Counts %+v, List says %+v", c, want)
	}
	for _, a := range list {
		if !slices.Equal(sh.nodes[a.VolumeID], a.Nodes) {
			t.Fatalf("events say %s is on %v, List says %v", a.VolumeID, sh.nodes[a.VolumeID], a.Nodes)
		}
	}
	stored, err := store.Load(ctx)
	must(t, err)
	if d := attachtest.EqualState(stored, list); d != "" {
		t.Fatalf("store and manager disagree: %s", d)
	}
	summary := map[string]int64{}
	counts.Range(func(k, v any) bool { summary[k.(string)] = v.(*atomic.Int64).Load(); return true })
	t.Logf("outcomes %v, %d migrations timed out, final %+v", summary, timedOut.Load(), m.Counts())
	for _, class := range []string{"ok", attach.ErrConflict.Error(), attach.ErrMigrationLimit.Error()} {
		if summary[class] == 0 {
			t.Errorf("no %q outcome: the stress did not exercise it", class)
		}
	}
}
