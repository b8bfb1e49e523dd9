package metrics

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/srvlab/rds-csi/attach"
)

// countsFromList derives the gauges from what the Manager lists, the
// independent truth the callback's O(1) Counts must agree with.
func countsFromList(as []attach.Attachment, now time.Time) attach.Counts {
	var c attach.Counts
	for _, a := range as {
		n := len(a.Nodes)
		if n == 0 {
			continue
		}
		c.Volumes++
		c.NodeAttachments += n
		if n == 2 {
			c.Migrations++
			if !a.MigrationStarted.IsZero() && now.Sub(a.MigrationStarted) > a.MigrationTimeout {
				c.TimedOutMigrations++
			}
		}
	}
	return c
}

func newManager(t testing.TB, store attach.Store, opts ...attach.Option) *attach.Manager {
	t.Helper()
	m, err := attach.NewManager(context.Background(), store, opts...)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func TestGaugesMatchManagerUnderRandomOps(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	r, mp := newReader(t)
	m := newManager(t, attach.NewMemStore())
	newOTel(t, mp, m)
	ctx := context.Background()

	const volumes, nodes, steps = 12, 4, 600
	var refused, started, succeeded int64
	for i := 0; i < steps; i++ {
		v := rng.IntN(volumes)
		vol, node := fmt.Sprintf("pvc-%d", v), fmt.Sprintf("node-%d", rng.IntN(nodes))
		before, _ := m.Get(vol)
		if rng.IntN(3) > 0 {
			mode := attach.Exclusive
			if v%2 == 1 {
				mode = attach.Migratable
			}
			err := m.Attach(ctx, attach.Request{VolumeID: vol, NodeID: node, Mode: mode, MigrationTimeout: time.Hour})
			switch {
			case err == nil:
			case errors.Is(err, attach.ErrConflict), errors.Is(err, attach.ErrMigrationLimit):
				refused++
			default:
				t.Fatalf("step %d: Attach(%s, %s): %v", i, vol, node, err)
			}
		} else if err := m.Detach(ctx, vol, node); err != nil {
			t.Fatalf("step %d: Detach(%s, %s): %v", i, vol, node, err)
		}
		after, _ := m.Get(vol)
		switch {
		case len(before.Nodes) < 2 && len(after.Nodes) == 2:
			started++
		case len(before.Nodes) == 2 && len(after.Nodes) < 2:
			succeeded++
		}
		want := countsFromList(m.List(), time.Now())
		got := collect(t, r).gauges(t)
		if got != want {
			t.Fatalf("step %d: gauges %+v, manager lists %+v", i, got, want)
		}
	}
	c := collect(t, r)
	if got := c.points(t, "rds_csi.attachment.conflicts")[""]; got != refused {
		t.Errorf("conflicts counter %d, Attach refused %d times", got, refused)
	}
	if started == 0 || refused == 0 {
		t.Errorf("sequence too tame: %d migrations, %d refusals", started, refused)
	}
	if got := c.points(t, "rds_csi.migration.migrations"); got["result=success"] != succeeded || len(got) > 1 {
		t.Errorf("migrations counter %v, want %d successes", got, succeeded)
	}
}

func TestMigratingVolumeGauges(t *testing.T) {
	r, mp := newReader(t)
	m := newManager(t, attach.NewMemStore())
	newOTel(t, mp, m)
	ctx := context.Background()

	req := attach.Request{VolumeID: "pvc-a", NodeID: "node-1", Mode: attach.Migratable, MigrationTimeout: time.Hour}
	mustAttach(t, m, req)
	if got, want := collect(t, r).gauges(t), (attach.Counts{Volumes: 1, NodeAttachments: 1}); got != want {
		t.Errorf("one node: gauges %+v, want %+v", got, want)
	}
	req.NodeID = "node-2"
	mustAttach(t, m, req)
	if got, want := collect(t, r).gauges(t), (attach.Counts{Volumes: 1, NodeAttachments: 2, Migrations: 1}); got != want {
		t.Errorf("migrating: gauges %+v, want %+v", got, want)
	}
	if err := m.Detach(ctx, "pvc-a", "node-1"); err != nil {
		t.Fatal(err)
	}
	c := collect(t, r)
	if got, want := c.gauges(t), (attach.Counts{Volumes: 1, NodeAttachments: 1}); got != want {
		t.Errorf("migrated: gauges %+v, want %+v", got, want)
	}
	if got := c.points(t, "rds_csi.migration.migrations"); got["result=success"] != 1 || len(got) != 1 {
		t.Errorf("migrations counter %v, want one success", got)
	}
	if err := m.Detach(ctx, "pvc-a", "node-2"); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, r).gauges(t); got != (attach.Counts{}) {
		t.Errorf("detached: gauges %+v, want zeros", got)
	}
}

func TestTimedOutMigrationGauge(t *testing.T) {
	r, mp := newReader(t)
	clock := &fakeClock{}
	clock.set(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	m := newManager(t, attach.NewMemStore(), attach.WithClock(clock.now))
	newOTel(t, mp, m)

	req := attach.Request{VolumeID: "pvc-t", NodeID: "node-1", Mode: attach.Migratable, MigrationTimeout: time.Minute}
	mustAttach(t, m, req)
	req.NodeID = "node-2"
	mustAttach(t, m, req)
	if got, want := collect(t, r).gauges(t), (attach.Counts{Volumes: 1, NodeAttachments: 2, Migrations: 1}); got != want {
		t.Errorf("within timeout: gauges %+v, want %+v", got, want)
	}

	clock.advance(2 * time.Minute)
	// Counts notices the timeout inside the collection callback and fires
	// an event that records a counter: this must not deadlock.
	c := collect(t, r)
	if got, want := c.gauges(t), (attach.Counts{Volumes: 1, NodeAttachments: 2, Migrations: 1, TimedOutMigrations: 1}); got != want {
		t.Errorf("past timeout: gauges %+v, want %+v", got, want)
	}
	if err := m.Detach(context.Background(), "pvc-t", "node-1"); err != nil {
		t.Fatal(err)
	}
	c = collect(t, r)
	if got, want := c.gauges(t), (attach.Counts{Volumes: 1, NodeAttachments: 1}); got != want {
		t.Errorf("after detach: gauges %+v, want %+v", got, want)
	}
	// Counted once, as a timeout, not also as a success.
	if got := c.points(t, "rds_csi.migration.migrations"); fmt.Sprint(got) != "map[result=timeout:1]" {
		t.Errorf("migrations counter %v, want one timeout", got)
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func mustAttach(t testing.TB, m *attach.Manager, req attach.Request) {
	t.Helper()
	if err := m.Attach(context.Background(), req); err != nil {
		t.Fatalf("Attach(%+v): %v", req, err)
	}
}

// TestConcurrentManagerAndCollections runs attaches, detaches and
// collections at once (for -race and for lock-order deadlocks between the
// Manager's observer and the collection callback), then checks the final
// gauges against the Manager's list.
func TestConcurrentManagerAndCollections(t *testing.T) {
	r, mp := newReader(t)
	m := newManager(t, attach.NewMemStore())
	newOTel(t, mp, m)
	ctx := context.Background()

	const workers, steps = 6, 150
	stop := make(chan struct{})
	collected := make(chan int)
	go func() {
		n := 0
		defer func() { collected <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var rm metricdata.ResourceMetrics
			if err := r.Collect(ctx, &rm); err != nil {
				t.Errorf("collect: %v", err)
				return
			}
			n++
		}
	}()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; i < steps; i++ {
				vol, node := fmt.Sprintf("pvc-%d", rng.IntN(8)), fmt.Sprintf("node-%d", rng.IntN(3))
				if rng.IntN(2) == 0 {
					err := m.Attach(ctx, attach.Request{VolumeID: vol, NodeID: node, Mode: attach.Migratable, MigrationTimeout: time.Hour})
					if err != nil && !errors.Is(err, attach.ErrMigrationLimit) {
						t.Errorf("Attach: %v", err)
					}
				} else if err := m.Detach(ctx, vol, node); err != nil {
					t.Errorf("Detach: %v", err)
				}
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	if n := <-collected; n == 0 {
		t.Error("no collection ran concurrently")
	}
	if got, want := collect(t, r).gauges(t), countsFromList(m.List(), time.Now()); got != want {
		t.Errorf("final gauges %+v, manager lists %+v", got, want)
	}
}
