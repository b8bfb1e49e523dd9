package attach_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/srvlab/rds-csi/attach"
)

// An observer added after NewManager (the way a metrics recorder that
// reads the Manager's counts is wired) receives events beside the one
// from WithObserver, and stops receiving them once removed.
func TestAddObserver(t *testing.T) {
	ctx := context.Background()
	var first, second eventLog
	m := newManager(t, attach.NewMemStore(), attach.WithObserver(first.observe))
	remove := m.AddObserver(second.observe)
	if noop := m.AddObserver(nil); noop == nil {
		t.Fatal("AddObserver(nil) returned a nil remove func")
	} else {
		noop()
	}

	must(t, m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "a", Mode: ex}))
	_ = m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "b", Mode: ex})
	want := []attach.EventKind{attach.EventAttached, attach.EventConflict}
	for name, l := range map[string]*eventLog{"WithObserver": &first, "AddObserver": &second} {
		if got := kinds(l.take()); !slices.Equal(got, want) {
			t.Errorf("%s observer got %v, want %v", name, got, want)
		}
	}

	remove()
	remove() // idempotent
	must(t, m.Detach(ctx, "v", "a"))
	if got := kinds(first.take()); !slices.Equal(got, []attach.EventKind{attach.EventDetached}) {
		t.Errorf("WithObserver observer got %v after the other was removed", got)
	}
	if got := second.take(); len(got) != 0 {
		t.Errorf("removed observer still got %v", kinds(got))
	}
}

// Adding and removing observers while events flow is race-free, and an
// observer present for a whole operation sees its event.
func TestAddObserverConcurrent(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, attach.NewMemStore())
	var steady atomic.Int64
	defer m.AddObserver(func(attach.Event) { steady.Add(1) })()

	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				remove := m.AddObserver(func(attach.Event) {})
				vol := fmt.Sprintf("v%d-%d", w, i)
				if err := m.Attach(ctx, attach.Request{VolumeID: vol, NodeID: "n", Mode: ex}); err != nil {
					t.Error(err)
				}
				remove()
			}
		})
	}
	wg.Wait()
	if got := steady.Load(); got != 200 {
		t.Fatalf("steady observer saw %d events, want 200", got)
	}
}
