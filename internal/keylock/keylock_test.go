package keylock_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/internal/keylock"
)

func TestTryLockAllOrNothing(t *testing.T) {
	var s keylock.Set
	unlockA, ok := s.TryLock("a")
	if !ok {
		t.Fatal("first TryLock failed")
	}
	if _, ok := s.TryLock("b", "a"); ok {
		t.Fatal("TryLock(b, a) succeeded while a is held")
	}
	// b must not stay held by the failed attempt.
	unlockB, ok := s.TryLock("b")
	if !ok {
		t.Fatal("b stayed held after a failed all-or-nothing TryLock")
	}
	unlockB()
	unlockA()
	unlockA() // a second call does nothing
	if n := s.Len(); n != 0 {
		t.Fatalf("%d keys left after every unlock", n)
	}
	u, ok := s.TryLock("a", "a", "b")
	if !ok {
		t.Fatal("a key named twice deadlocked TryLock")
	}
	u()
}

func TestLockWaitsForHolder(t *testing.T) {
	var s keylock.Set
	unlock, err := s.Lock(context.Background(), "v")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		u, err := s.Lock(context.Background(), "v")
		if err == nil {
			u()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("second Lock returned (%v) while the key was held", err)
	default:
	}
	unlock()
	if err := <-got; err != nil {
		t.Fatalf("second Lock after release: %v", err)
	}
	if n := s.Len(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

func TestLockHonoursContext(t *testing.T) {
	var s keylock.Set
	unlock, ok := s.TryLock("v", "w")
	if !ok {
		t.Fatal("TryLock failed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() {
		_, err := s.Lock(ctx, "u", "w") // takes u, then waits for w
		got <- err
	}()
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock after cancel = %v, want context.Canceled", err)
	}
	// The cancelled waiter must hold nothing: u is free.
	u, ok := s.TryLock("u")
	if !ok {
		t.Fatal("a cancelled Lock left u held")
	}
	u()
	unlock()
	if n := s.Len(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
	if _, err := s.Lock(ctx, "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock with an ended ctx = %v", err)
	}
}

func TestLockDeadline(t *testing.T) {
	var s keylock.Set
	unlock, _ := s.TryLock("v")
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(ctx, "v"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock past its deadline = %v", err)
	}
}

// TestOrderNoDeadlock: callers naming the same keys in opposite orders
// all finish.
func TestOrderNoDeadlock(t *testing.T) {
	var s keylock.Set
	var wg sync.WaitGroup
	counter := 0
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys := []string{"a", "b", "c"}
			if i%2 == 1 {
				keys = []string{"c", "b", "a"}
			}
			u, err := s.Lock(context.Background(), keys...)
			if err != nil {
				t.Error(err)
				return
			}
			counter++ // guarded by the keys
			u()
		}()
	}
	wg.Wait()
	if counter != 50 {
		t.Fatalf("counter %d, want 50", counter)
	}
	if n := s.Len(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}
