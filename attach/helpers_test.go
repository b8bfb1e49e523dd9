package attach_test

import (
	"context"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/attach"
)

var t0 = time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// eventLog records events for assertions.
type eventLog struct {
	mu  sync.Mutex
	evs []attach.Event
}

func (l *eventLog) observe(e attach.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.mu.Unlock()
}

func (l *eventLog) take() []attach.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	evs := l.evs
	l.evs = nil
	return evs
}

func kinds(evs []attach.Event) []attach.EventKind {
	out := make([]attach.EventKind, len(evs))
	for i, e := range evs {
		out[i] = e.Kind
	}
	return out
}

func newManager(t *testing.T, store attach.Store, opts ...attach.Option) *attach.Manager {
	t.Helper()
	m, err := attach.NewManager(context.Background(), store, opts...)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func openFileStore(t testing.TB, path string, opts ...attach.FileOption) *attach.FileStore {
	t.Helper()
	s, err := attach.NewFileStore(path, opts...)
	if err != nil {
		t.Fatalf("NewFileStore: %v", err)
	}
	return s
}

func tempLog(t testing.TB) string { return filepath.Join(t.TempDir(), "attach.log") }

// countsOf computes what Counts must say for a listed state at now.
func countsOf(as []attach.Attachment, now time.Time) attach.Counts {
	var c attach.Counts
	for _, a := range as {
		c.Volumes++
		c.NodeAttachments += len(a.Nodes)
		if len(a.Nodes) == 2 {
			c.Migrations++
			if !now.Before(a.MigrationStarted.Add(a.MigrationTimeout)) {
				c.TimedOutMigrations++
			}
		}
	}
	return c
}

// checkNoLeak fails if goroutines started during the test outlive it.
func checkNoLeak(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:n])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
