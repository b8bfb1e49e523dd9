package attach

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/srvlab/rds-csi/internal/keylock"
)

// Option configures a Manager.
type Option func(*options)

type options struct {
	observer func(Event)
	clock    func() time.Time
	logger   *slog.Logger
	grace    time.Duration
}

// WithObserver sets a function that receives every Event. It is called
// outside the Manager's state lock, so it may call Get, List or Counts, but
// it must not call Attach, Detach, Replace or Reconcile. Events of one
// volume arrive in order, except that EventMigrationTimedOut fired by Counts
// or Run may race with a Detach of the same volume. It must be safe for
// concurrent use and should not block. Observers that need the Manager
// itself (such as a metrics recorder reading Counts) are added afterwards
// with Manager.AddObserver.
func WithObserver(f func(Event)) Option {
	return func(o *options) { o.observer = f }
}

// WithClock sets the clock used for migration start times and timeouts;
// tests inject a fake one. The default is time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.clock = now }
}

// WithLogger sets the logger. The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithReconcileGrace makes Reconcile clear a node only after it has been
// reported missing for at least d (measured between Reconcile calls with
// the Manager's clock), so that a brief outage of the node lookup does not
// clear live attachments. The default 0 clears on the first report.
func WithReconcileGrace(d time.Duration) Option {
	return func(o *options) { o.grace = d }
}

// Manager tracks which volumes are attached to which nodes and enforces the
// attachment rules. Every change is written to its Store before it becomes
// visible or the call returns. It is safe for concurrent use: calls on
// different volumes proceed in parallel, calls on one volume are ordered.
//
// A Manager starts no goroutines of its own; Run fires migration timeouts
// on time. Close stops Run and waits for calls in flight.
type Manager struct {
	store Store
	now   func() time.Time
	log   *slog.Logger
	// observers is replaced whole by AddObserver and its remove func, so
	// emit reads it without a lock.
	observers atomic.Pointer[[]*observer]
	obsMu     sync.Mutex // serialises changes to observers
	grace     time.Duration

	// gate is held shared by single-volume calls and exclusively by
	// Replace and Close.
	gate   sync.RWMutex
	closed atomic.Bool
	done   chan struct{}
	wake   chan struct{}

	locks keylock.Set // one per volume: orders Attach and Detach

	mu           sync.Mutex // guards the fields below; never held across I/O
	vols         map[string]*volume
	deadlines    deadlineHeap
	counts       Counts
	missingSince map[string]time.Time
}

// volume is the in-memory state of one volume. a.Nodes is never changed in
// place: every change builds a new slice, so the Store may keep it.
type volume struct {
	a        Attachment
	deadline time.Time
	timedOut bool
	heapIdx  int // position in Manager.deadlines, -1 when absent
}

// observer wraps an observer function so that it has an identity to
// remove by.
type observer struct{ f func(Event) }

// NewManager loads the state from store and returns a Manager that keeps
// it there. The caller keeps ownership of store and closes it after
// closing the Manager. Migrations already past their timeout are counted
// as timed out without firing EventMigrationTimedOut again.
func NewManager(ctx context.Context, store Store, opts ...Option) (*Manager, error) {
	if store == nil {
		return nil, fmt.Errorf("attach: nil store: %w", ErrInvalid)
	}
	o := options{clock: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.grace < 0 {
		return nil, fmt.Errorf("attach: negative reconcile grace: %w", ErrInvalid)
	}
	m := &Manager{
		store:        store,
		now:          o.clock,
		log:          o.logger,
		grace:        o.grace,
		done:         make(chan struct{}),
		wake:         make(chan struct{}, 1),
		missingSince: make(map[string]time.Time),
	}
	as, err := store.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("attach: load store: %w", err)
	}
	now := m.clock()
	norm, err := normalizeAll(as, now)
	if err != nil {
		return nil, fmt.Errorf("attach: load store: %w", err)
	}
	m.resetLocked(norm, now)
	if o.observer != nil {
		m.AddObserver(o.observer)
	}
	m.log.Debug("attach: state loaded", "volumes", m.counts.Volumes,
		"migrations", m.counts.Migrations, "timed_out", m.counts.TimedOutMigrations)
	return m, nil
}

func (m *Manager) clock() time.Time { return m.now().Round(0).UTC() }

// Attach attaches req.NodeID to req.VolumeID, or returns an error wrapping
// ErrInvalid, ErrConflict, ErrMigrationLimit, ErrMigrationTimedOut or
// ErrClosed, or the Store's error. Attaching an attached pair succeeds
// without writing. It returns only after the change is durable. ctx bounds
// the wait for other calls on the same volume and is passed to the Store.
func (m *Manager) Attach(ctx context.Context, req Request) error {
	if err := validateRequest(req); err != nil {
		return err
	}
	unlock, err := m.lockVolume(ctx, req.VolumeID)
	if err != nil {
		return err
	}
	defer unlock()

	now := m.clock()
	m.mu.Lock()
	evs := m.expireLocked(now, nil)
	next, refusal := decideAttach(m.vols[req.VolumeID], req, now)
	m.mu.Unlock()

	if refusal != nil {
		evs = append(evs, Event{Kind: EventConflict, VolumeID: req.VolumeID, NodeID: req.NodeID,
			Mode: req.Mode, Time: now, Err: refusal})
		m.emit(evs)
		return refusal
	}
	if next == nil { // already attached
		m.emit(evs)
		return nil
	}
	if err := m.store.Put(ctx, *next); err != nil {
		m.emit(evs)
		m.log.Warn("attach: store write failed", "volume", req.VolumeID, "node", req.NodeID, "err", err)
		return fmt.Errorf("attach: attach volume %q to node %q: %w", req.VolumeID, req.NodeID, err)
	}
	m.mu.Lock()
	evs = m.setLocked(req.VolumeID, next, now, EventDetached, evs)
	m.mu.Unlock()
	if len(next.Nodes) == 2 {
		m.signalRun()
	}
	m.emit(evs)
	return nil
}

// decideAttach returns the volume's next state, nil when nothing changes,
// or the refusal.
func decideAttach(v *volume, req Request, now time.Time) (*Attachment, error) {
	if v == nil {
		return &Attachment{VolumeID: req.VolumeID, Mode: req.Mode, Nodes: []string{req.NodeID}}, nil
	}
	cur := v.a
	if cur.Mode != req.Mode {
		return nil, fmt.Errorf("attach: volume %q is attached %s, requested %s: %w",
			req.VolumeID, cur.Mode, req.Mode, ErrConflict)
	}
	if slices.Contains(cur.Nodes, req.NodeID) {
		return nil, nil
	}
	if cur.Mode == Exclusive {
		return nil, fmt.Errorf("attach: volume %q is attached to node %q: %w",
			req.VolumeID, cur.Nodes[0], ErrConflict)
	}
	if len(cur.Nodes) >= 2 {
		if v.timedOut {
			return nil, fmt.Errorf("attach: volume %q: migration from %q to %q started %s ago: %w",
				req.VolumeID, cur.Nodes[0], cur.Nodes[1], now.Sub(cur.MigrationStarted), ErrMigrationTimedOut)
		}
		return nil, fmt.Errorf("attach: volume %q is attached to nodes %q and %q: %w",
			req.VolumeID, cur.Nodes[0], cur.Nodes[1], ErrMigrationLimit)
	}
	timeout := req.MigrationTimeout
	if timeout == 0 {
		timeout = DefaultMigrationTimeout
	}
	return &Attachment{
		VolumeID:         req.VolumeID,
		Mode:             Migratable,
		Nodes:            []string{cur.Nodes[0], req.NodeID},
		MigrationStarted: now,
		MigrationTimeout: timeout,
	}, nil
}

// Detach detaches nodeID from volumeID. Detaching a pair that is not
// attached succeeds without writing. Detaching either node of a migration
// ends it. It returns only after the change is durable.
func (m *Manager) Detach(ctx context.Context, volumeID, nodeID string) error {
	if err := validateIDs(volumeID, nodeID); err != nil {
		return err
	}
	unlock, err := m.lockVolume(ctx, volumeID)
	if err != nil {
		return err
	}
	defer unlock()

	now := m.clock()
	m.mu.Lock()
	evs := m.expireLocked(now, nil)
	v := m.vols[volumeID]
	if v == nil || !slices.Contains(v.a.Nodes, nodeID) {
		m.mu.Unlock()
		m.emit(evs)
		return nil
	}
	next := without(v.a, map[string]bool{nodeID: true})
	m.mu.Unlock()

	if err := m.write(ctx, volumeID, next); err != nil {
		m.emit(evs)
		m.log.Warn("attach: store write failed", "volume", volumeID, "node", nodeID, "err", err)
		return fmt.Errorf("attach: detach volume %q from node %q: %w", volumeID, nodeID, err)
	}
	m.mu.Lock()
	evs = m.setLocked(volumeID, next, now, EventDetached, evs)
	m.mu.Unlock()
	m.emit(evs)
	return nil
}

// without returns a without the nodes in drop, or nil when none remain.
func without(a Attachment, drop map[string]bool) *Attachment {
	var keep []string
	for _, n := range a.Nodes {
		if !drop[n] {
			keep = append(keep, n)
		}
	}
	if len(keep) == 0 {
		return nil
	}
	next := Attachment{VolumeID: a.VolumeID, Mode: a.Mode, Nodes: keep}
	if len(keep) == 2 {
		next.MigrationStarted, next.MigrationTimeout = a.MigrationStarted, a.MigrationTimeout
	}
	return &next
}

// write stores next, or deletes the volume when next is nil.
func (m *Manager) write(ctx context.Context, volumeID string, next *Attachment) error {
	if next == nil {
		return m.store.Delete(ctx, volumeID)
	}
	return m.store.Put(ctx, *next)
}

// Get returns a copy of the volume's attachment.
func (m *Manager) Get(volumeID string) (Attachment, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := m.vols[volumeID]
	if v == nil {
		return Attachment{}, false
	}
	return cloneAttachment(v.a), true
}

// List returns copies of all attachments, sorted by volume ID.
func (m *Manager) List() []Attachment {
	return m.list(func(*volume) bool { return true })
}

// ListByNode returns copies of the attachments that include nodeID, sorted
// by volume ID.
func (m *Manager) ListByNode(nodeID string) []Attachment {
	return m.list(func(v *volume) bool { return slices.Contains(v.a.Nodes, nodeID) })
}

func (m *Manager) list(keep func(*volume) bool) []Attachment {
	m.mu.Lock()
	out := make([]Attachment, 0, len(m.vols))
	for _, v := range m.vols {
		if keep(v) {
			out = append(out, cloneAttachment(v.a))
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Attachment) int { return cmp.Compare(a.VolumeID, b.VolumeID) })
	return out
}

// Counts returns the current counts in O(1) (amortised: it first moves
// migrations past their deadline to timed out, firing
// EventMigrationTimedOut once for each). It is cheap enough for a metrics
// callback.
func (m *Manager) Counts() Counts {
	now := m.clock()
	m.mu.Lock()
	evs := m.expireLocked(now, nil)
	c := m.counts
	m.mu.Unlock()
	m.emit(evs)
	return c
}

// Run fires EventMigrationTimedOut when each migration passes its timeout,
// even when nobody calls Counts, Attach or Detach. It blocks until ctx is
// done (returning ctx.Err()) or the Manager is closed (returning nil).
func (m *Manager) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := m.clock()
		m.mu.Lock()
		evs := m.expireLocked(now, nil)
		wait := time.Hour
		if len(m.deadlines) > 0 {
			wait = max(m.deadlines[0].deadline.Sub(now), time.Millisecond)
		}
		m.mu.Unlock()
		m.emit(evs)

		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.done:
			return nil
		case <-m.wake:
		case <-timer.C:
		}
	}
}

func (m *Manager) signalRun() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Replace swaps in state rebuilt from an outside source of truth, such as
// Kubernetes VolumeAttachment objects. Every Attachment is checked before
// anything is written; the Store swaps the state atomically. A migration
// without a start time is taken to start now, and one without a timeout
// gets DefaultMigrationTimeout. Replace fires no events; migrations already
// past their timeout are counted as timed out.
func (m *Manager) Replace(ctx context.Context, as []Attachment) error {
	now := m.clock()
	norm, err := normalizeAll(as, now)
	if err != nil {
		return err
	}
	if m.closed.Load() {
		return ErrClosed
	}
	m.gate.Lock()
	defer m.gate.Unlock()
	if m.closed.Load() {
		return ErrClosed
	}
	if err := m.store.Replace(ctx, norm); err != nil {
		return fmt.Errorf("attach: replace: %w", err)
	}
	m.mu.Lock()
	m.resetLocked(norm, now)
	c := m.counts
	m.mu.Unlock()
	m.signalRun()
	m.log.Info("attach: state replaced", "volumes", c.Volumes, "node_attachments", c.NodeAttachments,
		"migrations", c.Migrations, "timed_out", c.TimedOutMigrations)
	return nil
}

// Close makes later calls fail with ErrClosed, waits for calls in flight
// and stops Run. It does not close the Store.
func (m *Manager) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	m.gate.Lock() // waits for calls in flight
	close(m.done)
	m.gate.Unlock()
	return nil
}

// lockVolume takes the shared gate and the volume's lock, in that order.
func (m *Manager) lockVolume(ctx context.Context, id string) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.gate.RLock()
	if m.closed.Load() {
		m.gate.RUnlock()
		return nil, ErrClosed
	}
	release, err := m.locks.Lock(ctx, id)
	if err != nil {
		m.gate.RUnlock()
		return nil, err
	}
	return func() {
		release()
		m.gate.RUnlock()
	}, nil
}

// setLocked makes next the state of volume id (nil removes it), keeps the
// counts and the deadline heap in step, and appends the events the change
// means; removed nodes are reported as removedKind.
func (m *Manager) setLocked(id string, next *Attachment, now time.Time, removedKind EventKind, evs []Event) []Event {
	old := m.vols[id]
	var oldNodes []string
	if old != nil {
		oldNodes = old.a.Nodes
		m.dropLocked(old)
		delete(m.vols, id)
	}
	var newNodes []string
	if next != nil {
		newNodes = next.Nodes
		m.addLocked(&volume{a: *next, heapIdx: -1}, now)
	}
	for _, n := range oldNodes {
		if !slices.Contains(newNodes, n) {
			evs = append(evs, Event{Kind: removedKind, VolumeID: id, NodeID: n, Mode: old.a.Mode, Time: now})
		}
	}
	for _, n := range newNodes {
		if !slices.Contains(oldNodes, n) {
			evs = append(evs, Event{Kind: EventAttached, VolumeID: id, NodeID: n, Mode: next.Mode, Time: now})
		}
	}
	switch {
	case len(oldNodes) < 2 && len(newNodes) == 2:
		evs = append(evs, Event{Kind: EventMigrationStarted, VolumeID: id, NodeID: newNodes[1],
			Mode: next.Mode, Time: now, Elapsed: now.Sub(next.MigrationStarted)})
	case len(oldNodes) == 2 && len(newNodes) < 2:
		left := oldNodes[0]
		if len(newNodes) == 1 && newNodes[0] == left {
			left = oldNodes[1]
		}
		evs = append(evs, Event{Kind: EventMigrationCompleted, VolumeID: id, NodeID: left,
			Mode: old.a.Mode, Time: now, Elapsed: now.Sub(old.a.MigrationStarted), TimedOut: old.timedOut})
	}
	return evs
}

// addLocked inserts v and counts it. A migration already past its deadline
// is counted as timed out without an event.
func (m *Manager) addLocked(v *volume, now time.Time) {
	m.vols[v.a.VolumeID] = v
	m.counts.Volumes++
	m.counts.NodeAttachments += len(v.a.Nodes)
	if len(v.a.Nodes) == 2 {
		m.counts.Migrations++
		v.deadline = v.a.MigrationStarted.Add(v.a.MigrationTimeout)
		if now.Before(v.deadline) {
			heap.Push(&m.deadlines, v)
		} else {
			v.timedOut = true
			m.counts.TimedOutMigrations++
		}
	}
}

// dropLocked uncounts v; the caller removes it from the map.
func (m *Manager) dropLocked(v *volume) {
	m.counts.Volumes--
	m.counts.NodeAttachments -= len(v.a.Nodes)
	if len(v.a.Nodes) == 2 {
		m.counts.Migrations--
		if v.timedOut {
			m.counts.TimedOutMigrations--
		}
	}
	if v.heapIdx >= 0 {
		heap.Remove(&m.deadlines, v.heapIdx)
	}
}

// resetLocked rebuilds all state from as, which normalizeAll has checked.
func (m *Manager) resetLocked(as []Attachment, now time.Time) {
	m.vols = make(map[string]*volume, len(as))
	m.deadlines = nil
	m.counts = Counts{}
	for _, a := range as {
		m.addLocked(&volume{a: a, heapIdx: -1}, now)
	}
}

// emit logs events and hands them to the observer; never called with mu
// held.
func (m *Manager) emit(evs []Event) {
	ctx := context.Background()
	for _, e := range evs {
		level := slog.LevelDebug
		switch e.Kind {
		case EventMigrationTimedOut, EventReconciled:
			level = slog.LevelWarn
		case EventMigrationStarted, EventMigrationCompleted:
			level = slog.LevelInfo
		}
		if m.log.Enabled(ctx, level) { // skip building arguments on the hot path
			args := []any{"volume", e.VolumeID, "node", e.NodeID, "mode", e.Mode}
			switch e.Kind {
			case EventConflict:
				args = append(args, "err", e.Err)
			case EventMigrationStarted, EventMigrationCompleted, EventMigrationTimedOut:
				args = append(args, "elapsed", e.Elapsed, "timed_out", e.TimedOut)
			}
			m.log.Log(ctx, level, "attach: "+e.Kind.String(), args...)
		}
		if obs := m.observers.Load(); obs != nil {
			for _, o := range *obs {
				o.f(e)
			}
		}
	}
}

// AddObserver adds f to the functions that receive every Event, with the
// same rules as WithObserver, and returns a function that removes it
// again. It exists because an observer is often built from the Manager:
// a metrics recorder needs the Manager as its count source before it can
// observe events. NewManager fires no events, so an observer added right
// after it misses nothing. An Event whose delivery began before remove
// returned may still reach f; later ones do not. Safe for concurrent use.
func (m *Manager) AddObserver(f func(Event)) (remove func()) {
	if f == nil {
		return func() {}
	}
	o := &observer{f: f}
	m.obsMu.Lock()
	var cur []*observer
	if p := m.observers.Load(); p != nil {
		cur = *p
	}
	next := append(slices.Clip(cur), o)
	m.observers.Store(&next)
	m.obsMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			m.obsMu.Lock()
			defer m.obsMu.Unlock()
			next := slices.DeleteFunc(slices.Clone(*m.observers.Load()), func(x *observer) bool { return x == o })
			m.observers.Store(&next)
		})
	}
}
