package attach

import (
	"context"
	"fmt"
	"sync"
)

// Store keeps the attachment state durably, one Attachment per volume. A
// Manager calls it with at most one call in flight per volume, but calls
// for different volumes run concurrently, so implementations must be safe
// for concurrent use.
//
// A method that returns nil must have made its change durable. Stores keep
// their own copies: the caller may change an Attachment (and its Nodes)
// after the call, and changing what Load returns changes nothing in the
// Store. After Close every method returns an error wrapping ErrClosed.
//
// attachtest.TestStore checks an implementation against this contract.
type Store interface {
	// Load returns every stored Attachment, in no particular order.
	Load(ctx context.Context) ([]Attachment, error)
	// Put inserts or replaces the state of a.VolumeID.
	Put(ctx context.Context, a Attachment) error
	// Delete removes a volume; deleting an absent volume succeeds.
	Delete(ctx context.Context, volumeID string) error
	// Replace swaps the whole state for as, atomically: after a crash
	// the Store holds either the old state or the new one.
	Replace(ctx context.Context, as []Attachment) error
	// Close releases the Store.
	Close() error
}

// MemStore is a Store that keeps everything in memory. It is meant for
// tests and examples: nothing survives the process.
type MemStore struct {
	mu     sync.Mutex
	state  map[string]Attachment
	closed bool
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty MemStore, for tests and examples.
func NewMemStore() *MemStore {
	return &MemStore{state: make(map[string]Attachment)}
}

// Load returns copies of every stored Attachment.
func (s *MemStore) Load(ctx context.Context) ([]Attachment, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	out := make([]Attachment, 0, len(s.state))
	for _, a := range s.state {
		out = append(out, cloneAttachment(a))
	}
	return out, nil
}

// Put stores a copy of a.
func (s *MemStore) Put(ctx context.Context, a Attachment) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if a.VolumeID == "" {
		return fmt.Errorf("attach: put: empty volume ID: %w", ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.state[a.VolumeID] = cloneAttachment(a)
	return nil
}

// Delete removes volumeID.
func (s *MemStore) Delete(ctx context.Context, volumeID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	delete(s.state, volumeID)
	return nil
}

// Replace swaps the state for copies of as.
func (s *MemStore) Replace(ctx context.Context, as []Attachment) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	next, err := replaceState(as)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.state = next
	return nil
}

// Close makes every later call fail with ErrClosed.
func (s *MemStore) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

// replaceState checks a Replace argument and copies it into a map.
func replaceState(as []Attachment) (map[string]Attachment, error) {
	next := make(map[string]Attachment, len(as))
	for _, a := range as {
		if a.VolumeID == "" {
			return nil, fmt.Errorf("attach: replace: empty volume ID: %w", ErrInvalid)
		}
		if _, dup := next[a.VolumeID]; dup {
			return nil, fmt.Errorf("attach: replace: volume %q listed twice: %w", a.VolumeID, ErrInvalid)
		}
		next[a.VolumeID] = cloneAttachment(a)
	}
	return next, nil
}

func cloneAttachment(a Attachment) Attachment {
	if a.Nodes != nil {
		a.Nodes = append([]string(nil), a.Nodes...)
	}
	return a
}
