package attach_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/attach/attachtest"
)

type step struct {
	op      string // "attach", "detach", "advance"
	vol     string
	node    string
	mode    attach.Mode
	timeout time.Duration
	d       time.Duration
	wantErr error
}

func att(vol, node string, mode attach.Mode, wantErr error) step {
	return step{op: "attach", vol: vol, node: node, mode: mode, wantErr: wantErr}
}

func attT(vol, node string, timeout time.Duration, wantErr error) step {
	return step{op: "attach", vol: vol, node: node, mode: attach.Migratable, timeout: timeout, wantErr: wantErr}
}

func det(vol, node string) step { return step{op: "detach", vol: vol, node: node} }

func detErr(vol, node string, wantErr error) step {
	return step{op: "detach", vol: vol, node: node, wantErr: wantErr}
}

func adv(d time.Duration) step { return step{op: "advance", d: d} }

const (
	ex  = attach.Exclusive
	mig = attach.Migratable
)

func TestStateMachine(t *testing.T) {
	tests := []struct {
		name       string
		steps      []step
		want       map[string][]string // volume -> nodes after the steps
		wantCounts attach.Counts
	}{
		{
			name:       "exclusive attach is idempotent",
			steps:      []step{att("v", "a", ex, nil), att("v", "a", ex, nil)},
			want:       map[string][]string{"v": {"a"}},
			wantCounts: attach.Counts{Volumes: 1, NodeAttachments: 1},
		},
		{
			name:       "exclusive second node conflicts",
			steps:      []step{att("v", "a", ex, nil), att("v", "b", ex, attach.ErrConflict)},
			want:       map[string][]string{"v": {"a"}},
			wantCounts: attach.Counts{Volumes: 1, NodeAttachments: 1},
		},
		{
			name:  "exclusive detach frees the volume",
			steps: []step{att("v", "a", ex, nil), det("v", "a"), det("v", "a"), att("v", "b", ex, nil)},
			want:  map[string][]string{"v": {"b"}}, wantCounts: attach.Counts{Volumes: 1, NodeAttachments: 1},
		},
		{
			name:  "detach of what is not attached succeeds",
			steps: []step{det("nope", "a"), att("v", "a", ex, nil), det("v", "b")},
			want:  map[string][]string{"v": {"a"}}, wantCounts: attach.Counts{Volumes: 1, NodeAttachments: 1},
		},
		{
			name: "other mode conflicts, even on the same node",
			steps: []step{
				att("v", "a", ex, nil), att("v", "a", mig, attach.ErrConflict), att("v", "b", mig, attach.ErrConflict),
				att("w", "a", mig, nil), att("w", "a", ex, attach.ErrConflict), att("w", "b", ex, attach.ErrConflict),
			},
			want:       map[string][]string{"v": {"a"}, "w": {"a"}},
			wantCounts: attach.Counts{Volumes: 2, NodeAttachments: 2},
		},
		{
			name: "migratable takes two nodes, a third hits the limit",
			steps: []step{
				att("v", "a", mig, nil), att("v", "b", mig, nil), att("v", "c", mig, attach.ErrMigrationLimit),
				att("v", "a", mig, nil), att("v", "b", mig, nil),
			},
			want:       map[string][]string{"v": {"a", "b"}},
			wantCounts: attach.Counts{Volumes: 1, NodeAttachments: 2, Migrations: 1},
		},
		{
			name: "default timeout: limit until 5m, then timed out",
			steps: []step{
				att("v", "a", mig, nil), att("v", "b", mig, nil),
				adv(attach.DefaultMigrationTimeout - time.Nanosecond), att("v", "c", mig, attach.ErrMigrationLimit),
				adv(time.Nanosecond), att("v", "c", mig, attach.ErrMigrationTimedOut),
				att("v", "a", mig, nil), att("v", "b", mig, nil), // re-attach stays a no-op
				att("v", "c", ex, attach.ErrConflict), // mode is checked first
			},
			want:       map[string][]string{"v": {"a", "b"}},
			wantCounts: attach.Counts{Volumes: 1, NodeAttachments: 2, Migrations: 1, TimedOutMigrations: 1},
		},
		{
			name: "detach ends a timed-out migration and a new one may start",
			steps: []step{
				att("v", "a", mig, nil), attT("v", "b", time.Minute, nil), adv(2 * time.Minute),
				att("v", "c", mig, attach.ErrMigrationTimedOut), det("v", "a"), attT("v", "c", time.Minute, nil),
			},
			want:       map[string][]string{"v": {"b", "c"}},
			wantCounts: attach.Counts{Volumes: 1, NodeAttachments: 2, Migrations: 1},
		},
		{
			name: "per-request timeout",
			steps: []step{
				att("v", "a", mig, nil), attT("v", "b", 30*time.Second, nil), adv(29 * time.Second),
				att("v", "c", mig, attach.ErrMigrationLimit), adv(time.Second), att("v", "c", mig, attach.ErrMigrationTimedOut),
			},
			want:       map[string][]string{"v": {"a", "b"}},
			wantCounts: attach.Counts{Volumes: 1, NodeAttachments: 2, Migrations: 1, TimedOutMigrations: 1},
		},
		{
			name:  "detaching the source leaves the target",
			steps: []step{att("v", "a", mig, nil), att("v", "b", mig, nil), det("v", "a")},
			want:  map[string][]string{"v": {"b"}}, wantCounts: attach.Counts{Volumes: 1, NodeAttachments: 1},
		},
		{
			name: "the manager never detaches by itself",
			steps: []step{
				att("v", "a", mig, nil), attT("v", "b", time.Second, nil), adv(time.Hour),
			},
			want:       map[string][]string{"v": {"a", "b"}},
			wantCounts: attach.Counts{Volumes: 1, NodeAttachments: 2, Migrations: 1, TimedOutMigrations: 1},
		},
		{
			name: "invalid requests",
			steps: []step{
				att("", "a", ex, attach.ErrInvalid), att("v", "", ex, attach.ErrInvalid),
				att("v", "a", 0, attach.ErrInvalid), att("v", "a", 3, attach.ErrInvalid),
				attT("v", "a", -time.Second, attach.ErrInvalid),
				att(strings.Repeat("v", 5000), "a", ex, attach.ErrInvalid),
				detErr("", "a", attach.ErrInvalid), detErr("v", "", attach.ErrInvalid),
			},
			want: map[string][]string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			m := newManager(t, attach.NewMemStore(), attach.WithClock(clock.Now))
			ctx := context.Background()
			for i, s := range tc.steps {
				var err error
				switch s.op {
				case "attach":
					err = m.Attach(ctx, attach.Request{VolumeID: s.vol, NodeID: s.node, Mode: s.mode, MigrationTimeout: s.timeout})
				case "detach":
					err = m.Detach(ctx, s.vol, s.node)
				case "advance":
					clock.Advance(s.d)
				}
				if !errors.Is(err, s.wantErr) || (s.wantErr == nil) != (err == nil) {
					t.Fatalf("step %d %s(%s, %s, %v): err %v, want %v", i, s.op, s.vol, s.node, s.mode, err, s.wantErr)
				}
			}
			got := map[string][]string{}
			for _, a := range m.List() {
				got[a.VolumeID] = a.Nodes
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("state %v, want %v", got, tc.want)
			}
			if c := m.Counts(); c != tc.wantCounts {
				t.Errorf("Counts %+v, want %+v", c, tc.wantCounts)
			}
			if c, want := m.Counts(), countsOf(m.List(), clock.Now()); c != want {
				t.Errorf("Counts %+v disagree with List %+v", c, want)
			}
		})
	}
}

func TestMigrationFields(t *testing.T) {
	clock := newFakeClock()
	m := newManager(t, attach.NewMemStore(), attach.WithClock(clock.Now))
	ctx := context.Background()
	must(t, m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "a", Mode: mig, MigrationTimeout: time.Hour}))
	a, _ := m.Get("v")
	if !a.MigrationStarted.IsZero() || a.MigrationTimeout != 0 {
		t.Fatalf("one node carries migration fields: %+v", a)
	}
	clock.Advance(time.Minute)
	must(t, m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "b", Mode: mig}))
	a, _ = m.Get("v")
	if !a.MigrationStarted.Equal(t0.Add(time.Minute)) || a.MigrationTimeout != attach.DefaultMigrationTimeout {
		t.Fatalf("migration fields %v %v, want %v %v", a.MigrationStarted, a.MigrationTimeout,
			t0.Add(time.Minute), attach.DefaultMigrationTimeout)
	}
	must(t, m.Detach(ctx, "v", "b"))
	a, _ = m.Get("v")
	if !a.MigrationStarted.IsZero() || a.MigrationTimeout != 0 || !slices.Equal(a.Nodes, []string{"a"}) {
		t.Fatalf("after the migration: %+v", a)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestReturnsCopies(t *testing.T) {
	m := newManager(t, attach.NewMemStore())
	ctx := context.Background()
	must(t, m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "a", Mode: mig}))
	must(t, m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "b", Mode: mig}))

	a, _ := m.Get("v")
	a.Nodes[0] = "evil"
	l := m.List()
	l[0].Nodes[1] = "evil"
	l[0].Nodes = append(l[0].Nodes[:1], "evil2")
	bn := m.ListByNode("a")
	bn[0].Nodes[0] = "evil"
	bn[0].VolumeID = "evil"

	got, ok := m.Get("v")
	if !ok || !slices.Equal(got.Nodes, []string{"a", "b"}) {
		t.Fatalf("state changed through a returned value: %+v", got)
	}
	if got := m.ListByNode("b"); len(got) != 1 || got[0].VolumeID != "v" {
		t.Fatalf("ListByNode(b) = %+v", got)
	}
	if got := m.ListByNode("c"); len(got) != 0 {
		t.Fatalf("ListByNode(c) = %+v", got)
	}
}

func TestEvents(t *testing.T) {
	clock := newFakeClock()
	var log eventLog
	m := newManager(t, attach.NewMemStore(), attach.WithClock(clock.Now), attach.WithObserver(log.observe))
	ctx := context.Background()
	must(t, m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "a", Mode: mig}))
	must(t, m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "a", Mode: mig})) // no-op: no event
	must(t, m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "b", Mode: mig, MigrationTimeout: time.Minute}))
	err := m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "c", Mode: mig})
	evs := log.take()
	want := []attach.EventKind{attach.EventAttached, attach.EventAttached, attach.EventMigrationStarted, attach.EventConflict}
	if !slices.Equal(kinds(evs), want) {
		t.Fatalf("events %v, want %v", kinds(evs), want)
	}
	if e := evs[3]; !errors.Is(e.Err, attach.ErrMigrationLimit) || e.Err.Error() != err.Error() || e.NodeID != "c" {
		t.Fatalf("conflict event %+v", e)
	}
	if e := evs[2]; e.NodeID != "b" || e.VolumeID != "v" || !e.Time.Equal(t0) {
		t.Fatalf("migration started event %+v", e)
	}

	clock.Advance(time.Minute + time.Second)
	for range 3 {
		m.Counts() // fires the timeout once, however often it is called
	}
	evs = log.take()
	if !slices.Equal(kinds(evs), []attach.EventKind{attach.EventMigrationTimedOut}) {
		t.Fatalf("events %v, want one timeout", kinds(evs))
	}
	if e := evs[0]; e.Elapsed != time.Minute+time.Second || e.NodeID != "b" {
		t.Fatalf("timeout event %+v", e)
	}

	must(t, m.Detach(ctx, "v", "b"))
	evs = log.take()
	if !slices.Equal(kinds(evs), []attach.EventKind{attach.EventDetached, attach.EventMigrationCompleted}) {
		t.Fatalf("events %v", kinds(evs))
	}
	if e := evs[1]; !e.TimedOut || e.NodeID != "b" || e.Elapsed != time.Minute+time.Second {
		t.Fatalf("completed event %+v", e)
	}

	// A migration that ends in time completes without TimedOut; the
	// timeout never fires for it.
	must(t, m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "c", Mode: mig, MigrationTimeout: time.Minute}))
	clock.Advance(30 * time.Second)
	must(t, m.Detach(ctx, "v", "a"))
	clock.Advance(time.Hour)
	m.Counts()
	evs = log.take()
	want = []attach.EventKind{attach.EventAttached, attach.EventMigrationStarted, attach.EventDetached, attach.EventMigrationCompleted}
	if !slices.Equal(kinds(evs), want) {
		t.Fatalf("events %v, want %v", kinds(evs), want)
	}
	if e := evs[3]; e.TimedOut || e.NodeID != "a" || e.Elapsed != 30*time.Second {
		t.Fatalf("completed event %+v", e)
	}
}

func TestEventKindString(t *testing.T) {
	seen := map[string]bool{}
	for k := attach.EventAttached; k <= attach.EventReconciled; k++ {
		s := k.String()
		if s == "" || strings.HasPrefix(s, "EventKind(") || seen[s] {
			t.Errorf("EventKind(%d).String() = %q", int(k), s)
		}
		seen[s] = true
	}
	if got := attach.EventKind(99).String(); got != "EventKind(99)" {
		t.Errorf("unknown kind: %q", got)
	}
	if got := attach.Migratable.String(); got != "migratable" {
		t.Errorf("Migratable.String() = %q", got)
	}
}

func TestManyDeadlinesExpireInOrder(t *testing.T) {
	clock := newFakeClock()
	var log eventLog
	m := newManager(t, attach.NewMemStore(), attach.WithClock(clock.Now), attach.WithObserver(log.observe))
	ctx := context.Background()
	const n = 200
	for i := range n {
		v := fmt.Sprintf("v%d", i)
		must(t, m.Attach(ctx, attach.Request{VolumeID: v, NodeID: "a", Mode: mig}))
		// Timeouts in a scrambled order.
		timeout := time.Duration((i*7919)%n+1) * time.Second
		must(t, m.Attach(ctx, attach.Request{VolumeID: v, NodeID: "b", Mode: mig, MigrationTimeout: timeout}))
		if i%10 == 0 { // some end early
			must(t, m.Detach(ctx, v, "a"))
		}
	}
	log.take()
	fired := map[string]int{}
	for sec := 0; sec <= n+1; sec += 3 {
		c := m.Counts()
		if want := countsOf(m.List(), clock.Now()); c != want {
			t.Fatalf("at +%ds: Counts %+v, want %+v", sec, c, want)
		}
		for _, e := range log.take() {
			if e.Kind != attach.EventMigrationTimedOut {
				t.Fatalf("unexpected %v", e.Kind)
			}
			fired[e.VolumeID]++
		}
		clock.Advance(3 * time.Second)
	}
	if len(fired) != n-n/10 {
		t.Fatalf("%d timeouts fired, want %d", len(fired), n-n/10)
	}
	for v, k := range fired {
		if k != 1 {
			t.Fatalf("%s fired %d times", v, k)
		}
	}
}

func TestRunFiresTimeoutWithoutCalls(t *testing.T) {
	checkNoLeak(t)
	var log eventLog
	fired := make(chan attach.Event, 1)
	m := newManager(t, attach.NewMemStore(), attach.WithObserver(func(e attach.Event) {
		if e.Kind == attach.EventMigrationTimedOut {
			fired <- e
		}
		log.observe(e)
	}))
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(ctx) }()

	// Run is asleep with nothing to wait for; the new migration wakes it.
	must(t, m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "a", Mode: mig}))
	must(t, m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "b", Mode: mig, MigrationTimeout: 20 * time.Millisecond}))
	select {
	case e := <-fired:
		if e.VolumeID != "v" || e.Elapsed < 20*time.Millisecond {
			t.Fatalf("timeout event %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not fire the timeout")
	}
	if c := m.Counts(); c.TimedOutMigrations != 1 {
		t.Fatalf("Counts %+v", c)
	}
	cancel()
	if err := <-runErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}

	// Close also stops Run.
	go func() { runErr <- m.Run(context.Background()) }()
	must(t, m.Close())
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("Run after Close returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not stop Run")
	}
}

func TestReconcile(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	var log eventLog
	m := newManager(t, attach.NewMemStore(), attach.WithClock(clock.Now), attach.WithObserver(log.observe))
	for _, r := range []attach.Request{
		{VolumeID: "v1", NodeID: "dead", Mode: ex},
		{VolumeID: "v2", NodeID: "live", Mode: ex},
		{VolumeID: "v3", NodeID: "dead", Mode: mig}, {VolumeID: "v3", NodeID: "live", Mode: mig},
		{VolumeID: "v4", NodeID: "live", Mode: mig}, {VolumeID: "v4", NodeID: "dead", Mode: mig},
		{VolumeID: "v5", NodeID: "dead", Mode: mig}, {VolumeID: "v5", NodeID: "gone", Mode: mig},
	} {
		must(t, m.Attach(ctx, r))
	}
	log.take()
	exists := map[string]bool{"live": true}

	// A failing lookup clears nothing, even for nodes already known dead.
	lookupErr := errors.New("api server down")
	cleared, err := m.Reconcile(ctx, func(_ context.Context, n string) (bool, error) {
		if n == "live" {
			return false, lookupErr
		}
		return exists[n], nil
	})
	if !errors.Is(err, lookupErr) || cleared != nil {
		t.Fatalf("Reconcile with a failing lookup: %v, %v", cleared, err)
	}
	if got := len(m.List()); got != 5 || len(log.take()) != 0 {
		t.Fatalf("a failed reconcile changed state: %d volumes", got)
	}

	cleared, err = m.Reconcile(ctx, func(_ context.Context, n string) (bool, error) { return exists[n], nil })
	must(t, err)
	want := []attach.Attachment{
		{VolumeID: "v1", Mode: ex, Nodes: []string{"dead"}},
		{VolumeID: "v3", Mode: mig, Nodes: []string{"dead"}},
		{VolumeID: "v4", Mode: mig, Nodes: []string{"dead"}},
		{VolumeID: "v5", Mode: mig, Nodes: []string{"dead", "gone"}},
	}
	if d := attachtest.EqualState(cleared, want); d != "" {
		t.Fatalf("cleared: %s", d)
	}
	left := map[string][]string{}
	for _, a := range m.List() {
		left[a.VolumeID] = a.Nodes
	}
	if want := map[string][]string{"v2": {"live"}, "v3": {"live"}, "v4": {"live"}}; !reflect.DeepEqual(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	if c := m.Counts(); c != (attach.Counts{Volumes: 3, NodeAttachments: 3}) {
		t.Fatalf("Counts %+v", c)
	}
	var reconciled, completed int
	for _, e := range log.take() {
		switch e.Kind {
		case attach.EventReconciled:
			reconciled++
		case attach.EventMigrationCompleted:
			completed++
		default:
			t.Errorf("unexpected event %v", e.Kind)
		}
	}
	if reconciled != 5 || completed != 3 {
		t.Fatalf("%d reconciled and %d completed events, want 5 and 3", reconciled, completed)
	}

	// Nothing left to clear.
	cleared, err = m.Reconcile(ctx, func(_ context.Context, n string) (bool, error) { return exists[n], nil })
	if err != nil || len(cleared) != 0 {
		t.Fatalf("second Reconcile: %v, %v", cleared, err)
	}
	if _, err := m.Reconcile(ctx, nil); !errors.Is(err, attach.ErrInvalid) {
		t.Fatalf("nil lookup: %v", err)
	}
}

func TestReconcileGrace(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	m := newManager(t, attach.NewMemStore(), attach.WithClock(clock.Now), attach.WithReconcileGrace(time.Minute))
	must(t, m.Attach(ctx, attach.Request{VolumeID: "v1", NodeID: "flaky", Mode: ex}))
	must(t, m.Attach(ctx, attach.Request{VolumeID: "v2", NodeID: "dead", Mode: ex}))
	exists := map[string]bool{}
	lookup := func(_ context.Context, n string) (bool, error) { return exists[n], nil }

	for _, step := range []struct {
		advance time.Duration
		flaky   bool
		want    []string // volumes cleared
	}{
		{0, false, nil},                           // both first seen missing
		{30 * time.Second, true, nil},             // flaky is back: its clock resets
		{30 * time.Second, false, []string{"v2"}}, // dead missing for 1m; flaky only just
		{59 * time.Second, false, nil},
		{time.Second, false, []string{"v1"}},
	} {
		clock.Advance(step.advance)
		exists["flaky"] = step.flaky
		cleared, err := m.Reconcile(ctx, lookup)
		must(t, err)
		var got []string
		for _, c := range cleared {
			got = append(got, c.VolumeID)
		}
		if !slices.Equal(got, step.want) {
			t.Fatalf("at %v: cleared %v, want %v", clock.Now().Sub(t0), got, step.want)
		}
	}
}

func TestReplace(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	store := attach.NewMemStore()
	m := newManager(t, store, attach.WithClock(clock.Now))
	must(t, m.Attach(ctx, attach.Request{VolumeID: "old", NodeID: "a", Mode: ex}))

	next := []attach.Attachment{
		{VolumeID: "x", Mode: ex, Nodes: []string{"a"}},
		{VolumeID: "y", Mode: mig, Nodes: []string{"a", "b"}, MigrationStarted: t0.Add(-time.Hour), MigrationTimeout: time.Minute},
		{VolumeID: "z", Mode: mig, Nodes: []string{"c", "d"}}, // no start: now, default timeout
	}
	must(t, m.Replace(ctx, next))
	if c := m.Counts(); c != (attach.Counts{Volumes: 3, NodeAttachments: 5, Migrations: 2, TimedOutMigrations: 1}) {
		t.Fatalf("Counts %+v", c)
	}
	z, _ := m.Get("z")
	if !z.MigrationStarted.Equal(t0) || z.MigrationTimeout != attach.DefaultMigrationTimeout {
		t.Fatalf("z = %+v", z)
	}
	if err := m.Attach(ctx, attach.Request{VolumeID: "y", NodeID: "c", Mode: mig}); !errors.Is(err, attach.ErrMigrationTimedOut) {
		t.Fatalf("attach to replaced timed-out migration: %v", err)
	}
	stored, _ := store.Load(ctx)
	if d := attachtest.EqualState(stored, m.List()); d != "" {
		t.Fatalf("store and manager disagree: %s", d)
	}

	bad := [][]attach.Attachment{
		{{VolumeID: "x", Mode: ex, Nodes: []string{"a"}}, {VolumeID: "x", Mode: ex, Nodes: []string{"b"}}},
		{{VolumeID: "x", Mode: ex, Nodes: []string{"a", "b"}}},
		{{VolumeID: "x", Mode: mig, Nodes: []string{"a", "b", "c"}}},
		{{VolumeID: "x", Mode: mig, Nodes: []string{"a", "a"}}},
		{{VolumeID: "x", Mode: mig, Nodes: nil}},
		{{VolumeID: "x", Mode: mig, Nodes: []string{""}}},
		{{VolumeID: "", Mode: ex, Nodes: []string{"a"}}},
		{{VolumeID: "x", Mode: 7, Nodes: []string{"a"}}},
		{{VolumeID: "x", Mode: mig, Nodes: []string{"a", "b"}, MigrationTimeout: -1}},
		{{VolumeID: "x", Mode: mig, Nodes: []string{"a"}, MigrationStarted: t0}},
		// A valid entry first: nothing may be applied.
		{{VolumeID: "ok", Mode: ex, Nodes: []string{"a"}}, {VolumeID: "x", Mode: mig, Nodes: []string{"a"}, MigrationTimeout: time.Second}},
	}
	before := m.List()
	for i, as := range bad {
		if err := m.Replace(ctx, as); !errors.Is(err, attach.ErrInvalid) {
			t.Errorf("bad state %d: %v, want ErrInvalid", i, err)
		}
	}
	if d := attachtest.EqualState(m.List(), before); d != "" {
		t.Fatalf("a refused Replace changed the state: %s", d)
	}
	stored, _ = store.Load(ctx)
	if d := attachtest.EqualState(stored, before); d != "" {
		t.Fatalf("a refused Replace changed the store: %s", d)
	}
}

func TestNewManagerRefusesContradictoryStore(t *testing.T) {
	store := attach.NewMemStore()
	must(t, store.Put(context.Background(), attach.Attachment{VolumeID: "v", Mode: ex, Nodes: []string{"a", "b"}}))
	if _, err := attach.NewManager(context.Background(), store); !errors.Is(err, attach.ErrInvalid) {
		t.Fatalf("NewManager: %v, want ErrInvalid", err)
	}
	if _, err := attach.NewManager(context.Background(), nil); !errors.Is(err, attach.ErrInvalid) {
		t.Fatalf("NewManager(nil): %v, want ErrInvalid", err)
	}
}

// gate blocks store calls for chosen volumes until released.
type gate struct {
	mu      sync.Mutex
	blocked map[string]chan struct{}
	entered chan string
}

func newGate(vols ...string) *gate {
	g := &gate{blocked: map[string]chan struct{}{}, entered: make(chan string, 16)}
	for _, v := range vols {
		g.blocked[v] = make(chan struct{})
	}
	return g
}

func (g *gate) inject(ctx context.Context, op attachtest.Op, vol string) error {
	g.mu.Lock()
	ch := g.blocked[vol]
	g.mu.Unlock()
	if ch == nil || op == attachtest.OpLoad {
		return nil
	}
	g.entered <- vol
	<-ch
	return nil
}

func (g *gate) release(vol string) { close(g.blocked[vol]) }

func TestChangeVisibleOnlyWhenDurable(t *testing.T) {
	ctx := context.Background()
	g := newGate("slow")
	m := newManager(t, attachtest.Wrap(attach.NewMemStore(), g.inject))
	done := make(chan error, 1)
	go func() { done <- m.Attach(ctx, attach.Request{VolumeID: "slow", NodeID: "a", Mode: ex}) }()
	<-g.entered

	// The write is in flight: nothing shows yet.
	if _, ok := m.Get("slow"); ok {
		t.Fatal("attachment visible before the store finished")
	}
	if c := m.Counts(); c.Volumes != 0 {
		t.Fatalf("Counts %+v before the store finished", c)
	}
	// An unrelated volume is not held up by the slow write.
	must(t, m.Attach(ctx, attach.Request{VolumeID: "fast", NodeID: "a", Mode: ex}))
	// The same volume waits its turn; a deadline stops the wait.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := m.Attach(short, attach.Request{VolumeID: "slow", NodeID: "b", Mode: ex}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second attach on a busy volume: %v, want DeadlineExceeded", err)
	}

	g.release("slow")
	must(t, <-done)
	if _, ok := m.Get("slow"); !ok {
		t.Fatal("attachment missing after the store finished")
	}
	if c := m.Counts(); c.Volumes != 2 {
		t.Fatalf("Counts %+v", c)
	}
}

func TestStoreFailureLeavesStateUnchanged(t *testing.T) {
	ctx := context.Background()
	broken := errors.New("disk on fire")
	var fail sync.Map
	store := attachtest.Wrap(attach.NewMemStore(), func(_ context.Context, op attachtest.Op, _ string) error {
		if _, ok := fail.Load(op); ok {
			return broken
		}
		return nil
	})
	var log eventLog
	m := newManager(t, store, attach.WithObserver(log.observe))
	must(t, m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "a", Mode: mig}))
	fail.Store(attachtest.OpPut, true)
	fail.Store(attachtest.OpDelete, true)
	log.take()

	if err := m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "b", Mode: mig}); !errors.Is(err, broken) {
		t.Fatalf("Attach: %v, want the store error", err)
	}
	if err := m.Detach(ctx, "v", "a"); !errors.Is(err, broken) {
		t.Fatalf("Detach: %v, want the store error", err)
	}
	if a, _ := m.Get("v"); !slices.Equal(a.Nodes, []string{"a"}) {
		t.Fatalf("state changed after failed writes: %+v", a)
	}
	if c := m.Counts(); c != (attach.Counts{Volumes: 1, NodeAttachments: 1}) {
		t.Fatalf("Counts %+v", c)
	}
	if evs := log.take(); len(evs) != 0 {
		t.Fatalf("events for failed writes: %v", kinds(evs))
	}
	// Reconcile stops at the failed write and reports nothing cleared.
	cleared, err := m.Reconcile(ctx, func(context.Context, string) (bool, error) { return false, nil })
	if !errors.Is(err, broken) || len(cleared) != 0 {
		t.Fatalf("Reconcile: %v, %v", cleared, err)
	}
	if _, ok := m.Get("v"); !ok {
		t.Fatal("Reconcile removed state it could not write")
	}
}

func TestCloseWaitsAndRefuses(t *testing.T) {
	ctx := context.Background()
	g := newGate("v")
	m, err := attach.NewManager(ctx, attachtest.Wrap(attach.NewMemStore(), g.inject))
	must(t, err)
	done := make(chan error, 1)
	go func() { done <- m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "a", Mode: ex}) }()
	<-g.entered
	closed := make(chan struct{})
	go func() { m.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while an Attach was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	g.release("v")
	must(t, <-done)
	<-closed
	for name, err := range map[string]error{
		"Attach":  m.Attach(ctx, attach.Request{VolumeID: "w", NodeID: "a", Mode: ex}),
		"Detach":  m.Detach(ctx, "v", "a"),
		"Replace": m.Replace(ctx, nil),
	} {
		if !errors.Is(err, attach.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if _, err := m.Reconcile(ctx, func(context.Context, string) (bool, error) { return false, nil }); !errors.Is(err, attach.ErrClosed) {
		t.Errorf("Reconcile after Close: %v", err)
	}
	if _, ok := m.Get("v"); !ok {
		t.Error("reads stop working after Close")
	}
	must(t, m.Close()) // twice is fine
}

func TestLogger(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelInfo}))
	clock := newFakeClock()
	m := newManager(t, attach.NewMemStore(), attach.WithClock(clock.Now), attach.WithLogger(logger))
	ctx := context.Background()
	must(t, m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "a", Mode: mig}))
	must(t, m.Attach(ctx, attach.Request{VolumeID: "v", NodeID: "b", Mode: mig, MigrationTimeout: time.Second}))
	clock.Advance(time.Minute)
	m.Counts()
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	for _, want := range []string{"level=INFO msg=\"attach: migration_started\"", "level=WARN msg=\"attach: migration_timed_out\" volume=v node=b"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "level=DEBUG") {
		t.Errorf("debug lines at info level:\n%s", out)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestReportTimedOut: a migration that timed out before Replace fires no
// event until ReportTimedOut is asked for timeouts after a time before its
// deadline; one reported since its deadline, a running migration and an
// exclusive volume are not reported.
func TestReportTimedOut(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	var log eventLog
	m := newManager(t, attach.NewMemStore(), attach.WithClock(clock.Now), attach.WithObserver(log.observe))
	must(t, m.Replace(ctx, []attach.Attachment{
		{VolumeID: "old", Mode: mig, Nodes: []string{"a", "b"}, MigrationStarted: t0.Add(-10 * time.Minute), MigrationTimeout: 5 * time.Minute},
		{VolumeID: "older", Mode: mig, Nodes: []string{"c", "d"}, MigrationStarted: t0.Add(-time.Hour), MigrationTimeout: 5 * time.Minute},
		{VolumeID: "running", Mode: mig, Nodes: []string{"e", "f"}, MigrationStarted: t0.Add(-time.Minute), MigrationTimeout: 5 * time.Minute},
		{VolumeID: "rwo", Mode: ex, Nodes: []string{"g"}},
	}))
	m.Counts()
	if evs := log.take(); len(evs) != 0 {
		t.Fatalf("Replace and Counts fired %v", kinds(evs))
	}
	if n := m.ReportTimedOut(t0.Add(-6 * time.Minute)); n != 1 {
		t.Fatalf("ReportTimedOut since the older deadline = %d, want 1", n)
	}
	evs := log.take()
	if len(evs) != 1 || evs[0].Kind != attach.EventMigrationTimedOut || evs[0].VolumeID != "old" || evs[0].NodeID != "b" ||
		!evs[0].Time.Equal(t0.Add(-5*time.Minute)) || evs[0].Elapsed != 5*time.Minute {
		t.Fatalf("events %+v", evs)
	}
	if n := m.ReportTimedOut(t0); n != 0 {
		t.Fatalf("ReportTimedOut since now = %d, want 0", n)
	}
	if n := m.ReportTimedOut(time.Time{}); n != 2 {
		t.Fatalf("ReportTimedOut since zero = %d, want 2", n)
	}
	if got := log.take(); len(got) != 2 || got[0].VolumeID != "older" || got[1].VolumeID != "old" {
		t.Fatalf("events not in deadline order: %+v", got)
	}
	// The running migration times out in the call: once, as Counts would.
	clock.Advance(5 * time.Minute)
	if n := m.ReportTimedOut(t0.Add(5 * time.Minute)); n != 1 {
		t.Fatalf("ReportTimedOut after the running deadline = %d, want 1", n)
	}
	if got := log.take(); len(got) != 1 || got[0].VolumeID != "running" {
		t.Fatalf("events %+v", got)
	}
	if c := m.Counts(); c.TimedOutMigrations != 3 {
		t.Fatalf("Counts %+v", c)
	}
	if got := log.take(); len(got) != 0 {
		t.Fatalf("Counts fired %+v again", got)
	}
}
