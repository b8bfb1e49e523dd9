package attach

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Reconcile removes every attachment of every node for which nodeExists
// reports false, and returns what it removed: one Attachment per volume
// holding only the removed nodes. It first looks up every attached node;
// if any lookup fails it returns that error and removes nothing. With
// WithReconcileGrace a node is removed only once it has been missing for
// the grace period. Each removal is written to the Store before it is
// applied and fires EventReconciled (not EventDetached). If a write fails,
// Reconcile stops and returns what it removed so far with the error.
func (m *Manager) Reconcile(ctx context.Context, nodeExists func(ctx context.Context, nodeID string) (bool, error)) ([]Attachment, error) {
	if nodeExists == nil {
		return nil, fmt.Errorf("attach: reconcile: nil node lookup: %w", ErrInvalid)
	}
	if m.closed.Load() {
		return nil, ErrClosed
	}
	// Snapshot the pairs; only pairs seen here are candidates, so a node
	// attached while lookups run is never cleared on a stale answer.
	m.mu.Lock()
	seen := make(map[string][]string, len(m.vols))
	nodeSet := make(map[string]bool)
	for id, v := range m.vols {
		seen[id] = v.a.Nodes
		for _, n := range v.a.Nodes {
			nodeSet[n] = true
		}
	}
	m.mu.Unlock()

	nodes := make([]string, 0, len(nodeSet))
	for n := range nodeSet {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	gone := make(map[string]bool)
	for _, n := range nodes {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("attach: reconcile: %w", err)
		}
		ok, err := nodeExists(ctx, n)
		if err != nil {
			m.log.Warn("attach: reconcile aborted, node lookup failed", "node", n, "err", err)
			return nil, fmt.Errorf("attach: reconcile: look up node %q: %w", n, err)
		}
		if !ok {
			gone[n] = true
		}
	}

	now := m.clock()
	m.mu.Lock()
	since := make(map[string]time.Time, len(gone))
	for n := range gone {
		first, ok := m.missingSince[n]
		if !ok {
			first = now
		}
		since[n] = first
		if now.Sub(first) < m.grace {
			delete(gone, n)
		}
	}
	m.missingSince = since // forget nodes that came back or have no attachments
	m.mu.Unlock()
	if len(gone) == 0 {
		return nil, nil
	}

	ids := make([]string, 0, len(seen))
	for id, ns := range seen {
		if slices.ContainsFunc(ns, func(n string) bool { return gone[n] }) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var cleared []Attachment
	for _, id := range ids {
		c, err := m.clearVolume(ctx, id, seen[id], gone)
		if err != nil {
			return cleared, err
		}
		if c != nil {
			cleared = append(cleared, *c)
		}
	}
	m.log.Warn("attach: reconcile cleared attachments of missing nodes", "volumes", len(cleared))
	return cleared, nil
}

// clearVolume removes from volume id the nodes that were seen attached and
// are gone.
func (m *Manager) clearVolume(ctx context.Context, id string, seen []string, gone map[string]bool) (*Attachment, error) {
	unlock, err := m.lockVolume(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("attach: reconcile: %w", err)
	}
	defer unlock()
	now := m.clock()
	m.mu.Lock()
	evs := m.expireLocked(now, nil)
	v := m.vols[id]
	drop := make(map[string]bool)
	var removed []string
	if v != nil {
		for _, n := range v.a.Nodes {
			if gone[n] && slices.Contains(seen, n) {
				drop[n] = true
				removed = append(removed, n)
			}
		}
	}
	if len(removed) == 0 {
		m.mu.Unlock()
		m.emit(evs)
		return nil, nil
	}
	mode := v.a.Mode
	next := without(v.a, drop)
	m.mu.Unlock()

	if err := m.write(ctx, id, next); err != nil {
		m.emit(evs)
		return nil, fmt.Errorf("attach: reconcile volume %q: %w", id, err)
	}
	m.mu.Lock()
	evs = m.setLocked(id, next, now, EventReconciled, evs)
	m.mu.Unlock()
	m.emit(evs)
	return &Attachment{VolumeID: id, Mode: mode, Nodes: removed}, nil
}
