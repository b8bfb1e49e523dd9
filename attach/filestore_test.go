package attach_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/attach/attachtest"
)

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func loadFile(t *testing.T, path string) []attach.Attachment {
	t.Helper()
	s := openFileStore(t, path)
	defer s.Close()
	as, err := s.Load(context.Background())
	must(t, err)
	return as
}

// lastRecordLog writes a log whose last record is a Put or a Delete and
// returns its bytes, where the last record starts, and the states before
// and after it.
func lastRecordLog(t *testing.T, deleteLast bool) (data []byte, start int64, before, after []attach.Attachment) {
	t.Helper()
	ctx := context.Background()
	path := tempLog(t)
	s := openFileStore(t, path)
	before = attachtest.Sample(5)
	for _, a := range before {
		must(t, s.Put(ctx, a))
	}
	start = fileSize(t, path)
	if deleteLast {
		must(t, s.Delete(ctx, before[2].VolumeID))
		after = append(append([]attach.Attachment{}, before[:2]...), before[3:]...)
	} else {
		last := attach.Attachment{VolumeID: "pvc-last", Mode: attach.Migratable, Nodes: []string{"node-a", "node-b"},
			MigrationStarted: t0, MigrationTimeout: time.Minute}
		must(t, s.Put(ctx, last))
		after = append(append([]attach.Attachment{}, before...), last)
	}
	must(t, s.Close())
	data, err := os.ReadFile(path)
	must(t, err)
	if d := attachtest.EqualState(loadFile(t, path), after); d != "" {
		t.Fatalf("intact log: %s", d)
	}
	return data, start, before, after
}

// Every cut inside the last record, and every corrupted byte of it, loads
// as the state before that record, and the bad bytes are cut off.
func TestFileStoreTornTail(t *testing.T) {
	for _, deleteLast := range []bool{false, true} {
		t.Run(fmt.Sprintf("delete=%v", deleteLast), func(t *testing.T) {
			data, start, before, _ := lastRecordLog(t, deleteLast)
			path := tempLog(t)
			check := func(what string, content []byte) {
				t.Helper()
				must(t, os.WriteFile(path, content, 0o600))
				if d := attachtest.EqualState(loadFile(t, path), before); d != "" {
					t.Fatalf("%s: %s", what, d)
				}
				if got := fileSize(t, path); got != start {
					t.Fatalf("%s: file is %d bytes after open, want the tail cut to %d", what, got, start)
				}
			}
			for off := start; off < int64(len(data)); off++ {
				check(fmt.Sprintf("cut at %d", off), data[:off])
			}
			for off := start; off < int64(len(data)); off++ {
				bad := append([]byte(nil), data...)
				bad[off] ^= 0x5a
				check(fmt.Sprintf("byte %d corrupted", off), bad)
			}
			check("zeros appended", append(append([]byte(nil), data[:start]...), make([]byte, 64)...))
		})
	}
}

// After a tail is cut, new writes land after the good records.
func TestFileStoreWritesAfterRecovery(t *testing.T) {
	ctx := context.Background()
	data, start, before, _ := lastRecordLog(t, false)
	path := tempLog(t)
	must(t, os.WriteFile(path, append(data[:start:start], 0xde, 0xad, 0xbe, 0xef, 0x01), 0o600))
	s := openFileStore(t, path)
	extra := attach.Attachment{VolumeID: "pvc-new", Mode: attach.Exclusive, Nodes: []string{"n"}}
	must(t, s.Put(ctx, extra))
	must(t, s.Close())
	if d := attachtest.EqualState(loadFile(t, path), append(before, extra)); d != "" {
		t.Fatal(d)
	}
}

func TestFileStoreHeader(t *testing.T) {
	path := tempLog(t)
	// A crash while creating the file leaves part of the magic.
	must(t, os.WriteFile(path, []byte("RDSA"), 0o600))
	if as := loadFile(t, path); len(as) != 0 {
		t.Fatalf("torn header loaded %d attachments", len(as))
	}
	s := openFileStore(t, path)
	must(t, s.Put(context.Background(), attachtest.Sample(1)[0]))
	must(t, s.Close())
	if d := attachtest.EqualState(loadFile(t, path), attachtest.Sample(1)); d != "" {
		t.Fatal(d)
	}

	for _, content := range []string{"{\"json\": true}\n", "xy"} {
		must(t, os.WriteFile(path, []byte(content), 0o600))
		if _, err := attach.NewFileStore(path); err == nil {
			t.Fatalf("opened a file holding %q", content)
		}
		if got, _ := os.ReadFile(path); string(got) != content {
			t.Fatalf("a foreign file was changed to %q", got)
		}
	}
}

func TestFileStoreLocked(t *testing.T) {
	path := tempLog(t)
	s := openFileStore(t, path)
	_, err := attach.NewFileStore(path)
	if !errors.Is(err, attach.ErrLocked) {
		t.Fatalf("second FileStore on one file: %v, want ErrLocked", err)
	}
	must(t, s.Close())
	s2 := openFileStore(t, path)
	must(t, s2.Close())
}

func TestFileStoreCompaction(t *testing.T) {
	checkNoLeak(t)
	ctx := context.Background()
	path := tempLog(t)
	s := openFileStore(t, path, attach.WithCompaction(3, 2048))
	want := attachtest.Sample(10)
	for round := range 300 {
		a := want[round%len(want)]
		a.Nodes = []string{fmt.Sprintf("node-round-%d", round)}
		a.MigrationStarted, a.MigrationTimeout = time.Time{}, 0
		must(t, s.Put(ctx, a))
		want[round%len(want)] = a
	}
	// Without compaction the log would hold 300 records.
	if size := fileSize(t, path); size > 4096 {
		t.Fatalf("log is %d bytes after 300 writes to 10 volumes: not compacted", size)
	}
	as, err := s.Load(ctx)
	must(t, err)
	if d := attachtest.EqualState(as, want); d != "" {
		t.Fatal(d)
	}
	if st := s.Stats(); st.Records != 300 || st.Syncs != 300 || st.Compactions == 0 {
		t.Fatalf("Stats %+v, want 300 records in 300 syncs and some compactions", st)
	}
	must(t, s.Close())
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left behind: %v", err)
	}
	if d := attachtest.EqualState(loadFile(t, path), want); d != "" {
		t.Fatalf("after reopen: %s", d)
	}
}

func TestFileStoreRejects(t *testing.T) {
	ctx := context.Background()
	s := openFileStore(t, tempLog(t))
	defer s.Close()
	for name, a := range map[string]attach.Attachment{
		"empty volume":      {Mode: attach.Exclusive, Nodes: []string{"n"}},
		"time out of range": {VolumeID: "v", Mode: attach.Migratable, Nodes: []string{"a", "b"}, MigrationStarted: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"oversized record":  {VolumeID: "v", Mode: attach.Exclusive, Nodes: []string{string(make([]byte, 2<<20))}},
	} {
		if err := s.Put(ctx, a); !errors.Is(err, attach.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	// Refused puts leave the store usable.
	must(t, s.Put(ctx, attachtest.Sample(1)[0]))
}

// Migration start, timeout and every count read the same after the
// Manager and its FileStore are closed and reopened, and the timeout is
// still enforced.
func TestRestartKeepsMigrationsAndCounts(t *testing.T) {
	checkNoLeak(t)
	ctx := context.Background()
	path := tempLog(t)
	clock := newFakeClock()
	open := func() (*attach.Manager, *attach.FileStore) {
		s := openFileStore(t, path)
		m, err := attach.NewManager(ctx, s, attach.WithClock(clock.Now))
		must(t, err)
		return m, s
	}
	m, s := open()
	for i := range 12 {
		v := fmt.Sprintf("pvc-%d", i)
		switch i % 3 {
		case 0:
			must(t, m.Attach(ctx, attach.Request{VolumeID: v, NodeID: "a", Mode: attach.Exclusive}))
		default:
			must(t, m.Attach(ctx, attach.Request{VolumeID: v, NodeID: "a", Mode: attach.Migratable}))
			if i%3 == 2 {
				must(t, m.Attach(ctx, attach.Request{VolumeID: v, NodeID: "b", Mode: attach.Migratable,
					MigrationTimeout: time.Duration(i) * time.Minute}))
			}
		}
		clock.Advance(time.Minute)
	}
	clock.Advance(3 * time.Minute) // some migrations are past their timeout
	beforeList, beforeCounts := m.List(), m.Counts()
	if beforeCounts.TimedOutMigrations == 0 || beforeCounts.TimedOutMigrations == beforeCounts.Migrations {
		t.Fatalf("test needs both running and timed-out migrations: %+v", beforeCounts)
	}
	must(t, m.Close())
	must(t, s.Close())

	var log eventLog
	s = openFileStore(t, path)
	m, err := attach.NewManager(ctx, s, attach.WithClock(clock.Now), attach.WithObserver(log.observe))
	must(t, err)
	if got := m.List(); !reflect.DeepEqual(got, beforeList) {
		t.Fatalf("after restart:\n%+v\nbefore:\n%+v", got, beforeList)
	}
	if got := m.Counts(); got != beforeCounts {
		t.Fatalf("Counts after restart %+v, before %+v", got, beforeCounts)
	}
	if evs := log.take(); len(evs) != 0 {
		t.Fatalf("restart fired events %v", kinds(evs))
	}
	// Enforced on the next attach, for a migration that timed out before
	// the restart and for one that times out after it.
	if err := m.Attach(ctx, attach.Request{VolumeID: "pvc-2", NodeID: "c", Mode: attach.Migratable}); !errors.Is(err, attach.ErrMigrationTimedOut) {
		t.Fatalf("pvc-2: %v, want ErrMigrationTimedOut", err)
	}
	if err := m.Attach(ctx, attach.Request{VolumeID: "pvc-11", NodeID: "c", Mode: attach.Migratable}); !errors.Is(err, attach.ErrMigrationLimit) {
		t.Fatalf("pvc-11: %v, want ErrMigrationLimit", err)
	}
	clock.Advance(time.Hour)
	if err := m.Attach(ctx, attach.Request{VolumeID: "pvc-11", NodeID: "c", Mode: attach.Migratable}); !errors.Is(err, attach.ErrMigrationTimedOut) {
		t.Fatalf("pvc-11 later: %v, want ErrMigrationTimedOut", err)
	}
	if c := m.Counts(); c.TimedOutMigrations != c.Migrations {
		t.Fatalf("Counts %+v", c)
	}
	must(t, m.Close())
	must(t, s.Close())
}

// A Replace through the Manager is durable.
func TestReplaceSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	path := tempLog(t)
	s := openFileStore(t, path)
	m, err := attach.NewManager(ctx, s)
	must(t, err)
	must(t, m.Attach(ctx, attach.Request{VolumeID: "old", NodeID: "a", Mode: attach.Exclusive}))
	next := attachtest.Sample(9)
	must(t, m.Replace(ctx, next))
	want := m.List()
	must(t, m.Close())
	must(t, s.Close())
	if d := attachtest.EqualState(loadFile(t, path), want); d != "" {
		t.Fatal(d)
	}
}
