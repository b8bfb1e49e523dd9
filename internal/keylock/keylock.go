// Package keylock is the one keyed lock of rds-csi: a set of locks named
// by string (volume, snapshot or node IDs) that are created on first use
// and dropped when no one holds or waits for them.
//
// Two ways to take keys, for the two policies the module needs:
//   - TryLock never waits: the CSI servers answer a second concurrent
//     call on a volume with Aborted at once, and the CO retries with
//     backoff.
//   - Lock waits, but only as long as its ctx lives: attach.Manager and
//     the controller's per-node section queue short critical sections
//     behind one another, and a caller whose RPC deadline passes while
//     the holder fsyncs stops waiting.
//
// Several keys are taken all or nothing (TryLock) or in sorted order
// (Lock), so two callers naming the same keys in another order cannot
// deadlock. There is no global lock across holders: the Set's mutex
// guards only its map.
package keylock

import (
	"context"
	"slices"
	"sync"
)

// Set is a set of keyed locks. The zero value is ready to use; a Set must
// not be copied after first use.
type Set struct {
	mu sync.Mutex
	m  map[string]*entry
}

// entry is one key's lock: a token in ch means held. refs counts holders
// and waiters so that the entry is dropped when the last one leaves.
type entry struct {
	ch   chan struct{}
	refs int
}

// ref returns key's entry with one more reference. s.mu must be held.
func (s *Set) ref(key string) *entry {
	if s.m == nil {
		s.m = map[string]*entry{}
	}
	e := s.m[key]
	if e == nil {
		e = &entry{ch: make(chan struct{}, 1)}
		s.m[key] = e
	}
	e.refs++
	return e
}

// unref drops one reference to key's entry. s.mu must be held.
func (s *Set) unref(key string, e *entry) {
	if e.refs--; e.refs == 0 {
		delete(s.m, key)
	}
}

// release gives back held keys.
func (s *Set) release(keys []string, es []*entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, k := range keys {
		<-es[i].ch
		s.unref(k, es[i])
	}
}

// unique returns keys sorted without repeats; a key named twice is taken
// once.
func unique(keys []string) []string {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	return slices.Compact(keys)
}

// TryLock takes every key or none without waiting. It returns the
// function that releases them, or ok false when one of them is held.
func (s *Set) TryLock(keys ...string) (unlock func(), ok bool) {
	keys = unique(keys)
	es := make([]*entry, 0, len(keys))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		e := s.ref(k)
		select {
		case e.ch <- struct{}{}:
			es = append(es, e)
		default:
			s.unref(k, e)
			for i, e := range es {
				<-e.ch
				s.unref(keys[i], e)
			}
			return nil, false
		}
	}
	return once(func() { s.release(keys, es) }), true
}

// Lock takes every key, waiting for holders to let go, until ctx ends.
// On ctx's end it holds nothing and returns ctx's error.
func (s *Set) Lock(ctx context.Context, keys ...string) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	keys = unique(keys)
	es := make([]*entry, 0, len(keys))
	for _, k := range keys {
		s.mu.Lock()
		e := s.ref(k)
		s.mu.Unlock()
		select {
		case e.ch <- struct{}{}:
			es = append(es, e)
		case <-ctx.Done():
			s.mu.Lock()
			s.unref(k, e)
			s.mu.Unlock()
			s.release(keys[:len(es)], es)
			return nil, ctx.Err()
		}
	}
	return once(func() { s.release(keys, es) }), nil
}

// Len returns the number of keys held or waited for.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// once makes an unlock function safe to call twice (a deferred unlock
// after an early one): the second call does nothing.
func once(f func()) func() {
	var o sync.Once
	return func() { o.Do(f) }
}
