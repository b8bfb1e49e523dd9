package attach

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// After a failed write the file's contents are unknown, so the store
// refuses further writes instead of appending after a possibly torn
// record; reopening recovers the durable state.
func TestFileStoreFailureIsSticky(t *testing.T) {
	for _, group := range []bool{true, false} {
		ctx := context.Background()
		path := filepath.Join(t.TempDir(), "attach.log")
		s, err := NewFileStore(path, WithGroupCommit(group))
		if err != nil {
			t.Fatal(err)
		}
		good := Attachment{VolumeID: "v1", Mode: Exclusive, Nodes: []string{"n"}}
		if err := s.Put(ctx, good); err != nil {
			t.Fatal(err)
		}
		// Swap the log for a read-only handle: the next write fails.
		ro, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		s.fileMu.Lock()
		s.f.Close()
		s.f = ro
		s.fileMu.Unlock()

		err1 := s.Put(ctx, Attachment{VolumeID: "v2", Mode: Exclusive, Nodes: []string{"n"}})
		if err1 == nil {
			t.Fatal("write to a read-only file succeeded")
		}
		err2 := s.Delete(ctx, "v1")
		if err2 == nil || err2.Error() != err1.Error() {
			t.Fatalf("second write: %v, want the first failure %v", err2, err1)
		}
		if err := s.Replace(ctx, nil); err == nil {
			t.Fatal("Replace on a failed store succeeded")
		}
		as, err := s.Load(ctx)
		if err != nil || len(as) != 1 || as[0].VolumeID != "v1" {
			t.Fatalf("Load after failure: %v %v", as, err)
		}
		s.Close()

		s, err = NewFileStore(path)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		as, err = s.Load(ctx)
		if err != nil || len(as) != 1 || as[0].VolumeID != "v1" {
			t.Fatalf("after reopen: %v %v", as, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if errors.Is(err1, ErrClosed) {
			t.Fatal("wrong error class")
		}
	}
}

// Writers that arrive while a sync runs share the next one.
func TestFileStoreGroupCommit(t *testing.T) {
	ctx := context.Background()
	s, err := NewFileStore(filepath.Join(t.TempDir(), "attach.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const writers = 32
	put := func(i int, errs chan<- error) {
		errs <- s.Put(ctx, Attachment{VolumeID: fmt.Sprintf("v%d", i), Mode: Exclusive, Nodes: []string{"n"}})
	}
	errs := make(chan error, writers)
	s.fileMu.Lock() // as if a sync were running
	// The first writer's batch is taken by the committer, which then
	// waits for the file.
	s.mu.Lock()
	first := s.cur
	s.mu.Unlock()
	go put(0, errs)
	waitFor(t, s, func() bool { return s.cur != first })
	// Everyone else queues behind it, in one batch.
	for i := 1; i < writers; i++ {
		go put(i, errs)
	}
	waitFor(t, s, func() bool { return len(s.cur.ops) == writers-1 })
	s.fileMu.Unlock()
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Records != writers || st.Syncs != 2 {
		t.Fatalf("Stats %+v: want %d records in 2 syncs", st, writers)
	}
}

// waitFor polls cond under the store's batch lock.
func waitFor(t *testing.T, s *FileStore, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		s.mu.Lock()
		ok := cond()
		s.mu.Unlock()
		if ok {
			return
		}
	}
	t.Fatal("condition not reached")
}
