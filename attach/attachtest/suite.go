package attachtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/attach"
)

// Option configures TestStore.
type Option func(*suite)

// Durable declares that the store keeps its state across Close: calling
// newStore again with the same *testing.T must reopen the same storage
// (for example, a path derived from t.Name() under a directory of the
// parent test). TestStore then checks that everything survives a reopen.
func Durable() Option {
	return func(s *suite) { s.durable = true }
}

type suite struct {
	newStore func(t *testing.T) attach.Store
	durable  bool
}

// TestStore checks that the Stores made by newStore honour the attach.Store
// contract: round trips of Put, Delete, Replace and Load, copies, errors
// after Close, concurrent use and, with Durable, reopening. newStore is
// called once per subtest (twice in the reopen test) and must return an
// empty store on the first call; TestStore closes what it gets.
func TestStore(t *testing.T, newStore func(t *testing.T) attach.Store, opts ...Option) {
	s := &suite{newStore: newStore}
	for _, o := range opts {
		o(s)
	}
	t.Run("Empty", s.testEmpty)
	t.Run("PutLoad", s.testPutLoad)
	t.Run("Upsert", s.testUpsert)
	t.Run("Delete", s.testDelete)
	t.Run("Replace", s.testReplace)
	t.Run("Copies", s.testCopies)
	t.Run("CanceledContext", s.testCanceled)
	t.Run("Closed", s.testClosed)
	t.Run("Concurrent", s.testConcurrent)
	t.Run("Reopen", s.testReopen)
}

func (s *suite) open(t *testing.T) attach.Store {
	t.Helper()
	st := s.newStore(t)
	if st == nil {
		t.Fatal("newStore returned nil")
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Sample returns n distinct, valid attachments: exclusive ones, single-node
// migratable ones and running migrations.
func Sample(n int) []attach.Attachment {
	base := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	out := make([]attach.Attachment, n)
	for i := range out {
		a := attach.Attachment{VolumeID: fmt.Sprintf("pvc-%04d", i), Nodes: []string{fmt.Sprintf("node-%d", i%7)}}
		switch i % 3 {
		case 0:
			a.Mode = attach.Exclusive
		case 1:
			a.Mode = attach.Migratable
		case 2:
			a.Mode = attach.Migratable
			a.Nodes = append(a.Nodes, fmt.Sprintf("node-%d", i%7+100))
			a.MigrationStarted = base.Add(time.Duration(i) * time.Second)
			a.MigrationTimeout = time.Duration(i%5+1) * time.Minute
		}
		out[i] = a
	}
	return out
}

// EqualState reports the first difference between two states, compared
// as sets by volume ID with times compared by instant; "" when equal.
func EqualState(got, want []attach.Attachment) string {
	sortByID := func(as []attach.Attachment) []attach.Attachment {
		as = slices.Clone(as)
		slices.SortFunc(as, func(a, b attach.Attachment) int { return cmp.Compare(a.VolumeID, b.VolumeID) })
		return as
	}
	got, want = sortByID(got), sortByID(want)
	for i := 0; i < max(len(got), len(want)); i++ {
		switch {
		case i >= len(got):
			return fmt.Sprintf("missing %+v", want[i])
		case i >= len(want):
			return fmt.Sprintf("unexpected %+v", got[i])
		}
		g, w := got[i], want[i]
		if g.VolumeID != w.VolumeID || g.Mode != w.Mode || !slices.Equal(g.Nodes, w.Nodes) ||
			!g.MigrationStarted.Equal(w.MigrationStarted) || g.MigrationTimeout != w.MigrationTimeout {
			return fmt.Sprintf("got %+v, want %+v", g, w)
		}
	}
	return ""
}

func load(t *testing.T, st attach.Store) []attach.Attachment {
	t.Helper()
	as, err := st.Load(context.Background())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return as
}

func check(t *testing.T, st attach.Store, want []attach.Attachment) {
	t.Helper()
	if d := EqualState(load(t, st), want); d != "" {
		t.Fatalf("Load: %s", d)
	}
}

func put(t *testing.T, st attach.Store, as ...attach.Attachment) {
	t.Helper()
	for _, a := range as {
		if err := st.Put(context.Background(), a); err != nil {
			t.Fatalf("Put(%s): %v", a.VolumeID, err)
		}
	}
}

func (s *suite) testEmpty(t *testing.T) {
	st := s.open(t)
	if as := load(t, st); len(as) != 0 {
		t.Fatalf("new store holds %d attachments, want 0", len(as))
	}
}

func (s *suite) testPutLoad(t *testing.T) {
	st := s.open(t)
	want := Sample(30)
	put(t, st, want...)
	check(t, st, want)
}

func (s *suite) testUpsert(t *testing.T) {
	st := s.open(t)
	want := Sample(3)
	put(t, st, want...)
	changed := want[0]
	changed.Nodes = []string{"node-other"}
	put(t, st, changed)
	want[0] = changed
	check(t, st, want)

	// A migration that ends loses its start time and timeout.
	ended := want[2]
	ended.Nodes = ended.Nodes[:1]
	ended.MigrationStarted, ended.MigrationTimeout = time.Time{}, 0
	put(t, st, ended)
	want[2] = ended
	check(t, st, want)
}

func (s *suite) testDelete(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	want := Sample(4)
	put(t, st, want...)
	if err := st.Delete(ctx, want[1].VolumeID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	want = slices.Delete(want, 1, 2)
	check(t, st, want)
	if err := st.Delete(ctx, "pvc-absent"); err != nil {
		t.Fatalf("Delete of an absent volume: %v", err)
	}
	check(t, st, want)
	// A deleted volume can come back.
	back := attach.Attachment{VolumeID: "pvc-0001", Mode: attach.Exclusive, Nodes: []string{"node-back"}}
	put(t, st, back)
	check(t, st, append(want, back))
}

func (s *suite) testReplace(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	put(t, st, Sample(10)...)
	next := Sample(25)[10:]
	if err := st.Replace(ctx, next); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	check(t, st, next)
	// Writes after a Replace land on the new state.
	extra := attach.Attachment{VolumeID: "pvc-extra", Mode: attach.Exclusive, Nodes: []string{"n"}}
	put(t, st, extra)
	if err := st.Delete(ctx, next[0].VolumeID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	check(t, st, append(slices.Clone(next[1:]), extra))
	if err := st.Replace(ctx, nil); err != nil {
		t.Fatalf("Replace(nil): %v", err)
	}
	check(t, st, nil)
}

func (s *suite) testCopies(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	want := Sample(3)
	in := Sample(3)
	put(t, st, in...)
	for i := range in {
		in[i].Nodes[0] = "mutated-after-put"
	}
	check(t, st, want)

	got := load(t, st)
	for i := range got {
		got[i].Nodes[0] = "mutated-after-load"
		got[i].Nodes = append(got[i].Nodes, "appended")
	}
	check(t, st, want)

	repl := Sample(3)
	if err := st.Replace(ctx, repl); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	repl[0].Nodes[0] = "mutated-after-replace"
	check(t, st, want)
}

func (s *suite) testCanceled(t *testing.T) {
	st := s.open(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a := Sample(1)[0]
	err := st.Put(ctx, a)
	switch {
	case err == nil:
		check(t, st, []attach.Attachment{a})
	case errors.Is(err, context.Canceled):
		check(t, st, nil)
	default:
		t.Fatalf("Put with a canceled context: %v, want nil or context.Canceled", err)
	}
}

func (s *suite) testClosed(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	put(t, st, Sample(2)...)
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	calls := map[string]error{
		"Put":     st.Put(ctx, Sample(1)[0]),
		"Delete":  st.Delete(ctx, "pvc-0000"),
		"Replace": st.Replace(ctx, nil),
	}
	_, calls["Load"] = st.Load(ctx)
	for name, err := range calls {
		if !errors.Is(err, attach.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func (s *suite) testConcurrent(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	const workers, ops, perWorker = 8, 60, 5
	finals := make([]map[string]attach.Attachment, workers)
	errs := make(chan error, workers+1)
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := st.Load(ctx); err != nil {
				errs <- fmt.Errorf("Load: %w", err)
				return
			}
		}
	})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			state := map[string]attach.Attachment{}
			for i := range ops {
				id := fmt.Sprintf("w%d-pvc-%d", w, rng.IntN(perWorker))
				if rng.IntN(3) == 0 {
					if err := st.Delete(ctx, id); err != nil {
						errs <- fmt.Errorf("Delete: %w", err)
						return
					}
					delete(state, id)
					continue
				}
				a := attach.Attachment{VolumeID: id, Mode: attach.Exclusive, Nodes: []string{fmt.Sprintf("node-%d", i)}}
				if err := st.Put(ctx, a); err != nil {
					errs <- fmt.Errorf("Put: %w", err)
					return
				}
				state[id] = a
			}
			finals[w] = state
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var want []attach.Attachment
	for _, m := range finals {
		for _, a := range m {
			want = append(want, a)
		}
	}
	check(t, st, want)
}

func (s *suite) testReopen(t *testing.T) {
	if !s.durable {
		t.Skip("store not declared durable (attachtest.Durable); reopen not checked")
	}
	ctx := context.Background()
	st := s.newStore(t)
	want := Sample(20)
	put(t, st, want...)
	if err := st.Delete(ctx, want[3].VolumeID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	want = slices.Delete(want, 3, 4)
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	st = s.newStore(t)
	check(t, st, want)
	next := Sample(40)[20:]
	if err := st.Replace(ctx, next); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	put(t, st, want[0])
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	st = s.newStore(t)
	defer st.Close()
	check(t, st, append(slices.Clone(next), want[0]))
}
