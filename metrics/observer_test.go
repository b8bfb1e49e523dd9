package metrics

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/srvlab/rds-csi/attach"
)

// callLog is a Recorder that remembers the calls AttachObserver makes.
type callLog struct {
	Noop
	mu    sync.Mutex
	calls []string
}

func (c *callLog) add(s string) {
	c.mu.Lock()
	c.calls = append(c.calls, s)
	c.mu.Unlock()
}
func (c *callLog) AttachmentConflict(context.Context)    { c.add("conflict") }
func (c *callLog) Migration(_ context.Context, r string) { c.add("migration " + r) }
func (c *callLog) Reconcile(_ context.Context, a string, n int) {
	c.add(fmt.Sprintf("reconcile %s %d", a, n))
}

func TestAttachObserverMapping(t *testing.T) {
	for _, tc := range []struct {
		ev   attach.Event
		want []string
	}{
		{attach.Event{Kind: attach.EventAttached}, nil},
		{attach.Event{Kind: attach.EventDetached}, nil},
		{attach.Event{Kind: attach.EventConflict, Err: attach.ErrConflict}, []string{"conflict"}},
		{attach.Event{Kind: attach.EventMigrationStarted}, []string{"migration started"}},
		{attach.Event{Kind: attach.EventMigrationTimedOut}, []string{"migration timeout"}},
		{attach.Event{Kind: attach.EventMigrationCompleted}, []string{"migration success"}},
		{attach.Event{Kind: attach.EventMigrationCompleted, TimedOut: true}, nil},
		{attach.Event{Kind: attach.EventReconciled}, []string{"reconcile cleared 1"}},
		{attach.Event{Kind: attach.EventKind(99)}, nil},
	} {
		rec := &callLog{}
		AttachObserver(rec)(tc.ev)
		if !slices.Equal(rec.calls, tc.want) {
			t.Errorf("%v: calls %q, want %q", tc.ev.Kind, rec.calls, tc.want)
		}
	}
	AttachObserver(nil)(attach.Event{Kind: attach.EventConflict}) // must not panic
}
