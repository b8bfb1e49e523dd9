package attach_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/attach/attachtest"
)

// recordLog writes n sample attachments with one Put each and returns the
// log's bytes, the file offset where each record starts (starts[n] is the
// log's size) and the attachments.
func recordLog(t *testing.T, n int) (data []byte, starts []int64, as []attach.Attachment) {
	t.Helper()
	ctx := context.Background()
	path := tempLog(t)
	s := openFileStore(t, path)
	as = attachtest.Sample(n)
	for _, a := range as {
		starts = append(starts, fileSize(t, path))
		must(t, s.Put(ctx, a))
	}
	starts = append(starts, fileSize(t, path))
	must(t, s.Close())
	data, err := os.ReadFile(path)
	must(t, err)
	return data, starts, as
}

// logCapture is a slog.Handler that keeps every record.
type logCapture struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCapture) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logCapture) WithGroup(string) slog.Handler            { return h }

func (h *logCapture) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}

// only returns the attributes of the single record logged at level, and
// fails unless there is exactly one record at that level.
func (h *logCapture) only(t *testing.T, level slog.Level) map[string]int64 {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	var found []slog.Record
	for _, r := range h.recs {
		if r.Level == level {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d records at %s, want 1: %v", len(found), level, h.recs)
	}
	attrs := map[string]int64{}
	found[0].Attrs(func(a slog.Attr) bool {
		if a.Value.Kind() == slog.KindInt64 {
			attrs[a.Key] = a.Value.Int64()
		}
		return true
	})
	return attrs
}

// checkCorrupt opens a log holding content and expects ErrCorrupt, twice
// (so the lock was released), with the file's bytes unchanged.
func checkCorrupt(t *testing.T, path string, content []byte, wantInErr ...string) {
	t.Helper()
	must(t, os.WriteFile(path, content, 0o600))
	for try := range 2 {
		s, err := attach.NewFileStore(path)
		if err == nil {
			s.Close()
			t.Fatalf("try %d: a log with valid records after damage opened", try)
		}
		if !errors.Is(err, attach.ErrCorrupt) || errors.Is(err, attach.ErrLocked) {
			t.Fatalf("try %d: %v, want ErrCorrupt", try, err)
		}
		for _, w := range wantInErr {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("error %q does not name %q", err, w)
			}
		}
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("a corrupt log was changed (%v): %d bytes, was %d", err, len(got), len(content))
	}
}

// openCut opens the log at path with opts, checks that it loads want and
// that the file was cut to size, and returns the attributes of the one
// record logged at level; what names the damage in failures.
func openCut(t *testing.T, path string, want []attach.Attachment, size int64, level slog.Level, what string, opts ...attach.FileOption) map[string]int64 {
	t.Helper()
	var logs logCapture
	s := openFileStore(t, path, append(opts, attach.WithFileLogger(slog.New(&logs)))...)
	got, err := s.Load(context.Background())
	must(t, err)
	must(t, s.Close())
	if d := attachtest.EqualState(got, want); d != "" {
		t.Fatalf("%s, recovered: %s", what, d)
	}
	if got := fileSize(t, path); got != size {
		t.Fatalf("%s: log is %d bytes, want it cut at %d", what, got, size)
	}
	return logs.only(t, level)
}

// A damaged record in the middle of the log, followed by valid records,
// is corruption of acknowledged data: the open fails and changes nothing,
// whichever byte of the record is damaged. With WithTruncateAtCorruption
// the log keeps the records before the damage.
func TestFileStoreCorruptMidLog(t *testing.T) {
	const n, k = 12, 6
	data, starts, as := recordLog(t, n)
	path := tempLog(t)
	for off := starts[k]; off < starts[k+1]; off++ {
		bad := bytes.Clone(data)
		bad[off] ^= 0x5a
		checkCorrupt(t, path, bad, path, fmt.Sprintf("offset %d", starts[k]),
			fmt.Sprintf("%d valid records follow from offset %d", n-k-1, starts[k+1]))

		attrs := openCut(t, path, as[:k], starts[k], slog.LevelError, fmt.Sprintf("byte %d damaged", off),
			attach.WithTruncateAtCorruption())
		if attrs["offset"] != starts[k] || attrs["valid_records_dropped"] != n-k-1 || attrs["bytes"] != starts[n]-starts[k] {
			t.Fatalf("byte %d damaged: logged %v", off, attrs)
		}
		// The recovered log is whole.
		if d := attachtest.EqualState(loadFile(t, path), as[:k]); d != "" {
			t.Fatalf("reopened: %s", d)
		}
	}
}

// A sector of zeros, aligned to the file, between a damaged record and
// valid ones is a torn write of a batch whose sync never returned: the log
// is cut at the first damaged record and a Warn says what was dropped.
func TestFileStoreTornWrite(t *testing.T) {
	const n = 60
	data, starts, as := recordLog(t, n)
	path := tempLog(t)
	for _, sector := range []int64{512, 1024, 1536} {
		first := 0 // the record holding the sector's first byte
		for starts[first+1] <= sector {
			first++
		}
		next := first // the first record after the sector
		for starts[next] < sector+512 {
			next++
		}
		if next >= n-2 {
			t.Fatalf("log of %d bytes too short for a valid record after sector %d", len(data), sector)
		}
		torn := bytes.Clone(data)
		clear(torn[sector : sector+512])
		must(t, os.WriteFile(path, torn, 0o600))
		attrs := openCut(t, path, as[:first], starts[first], slog.LevelWarn, fmt.Sprintf("sector %d zeroed", sector))
		want := map[string]int64{"offset": starts[first], "bytes": starts[n] - starts[first],
			"zero_sector": sector, "next_valid": starts[next], "valid_records_dropped": int64(n - next)}
		if fmt.Sprint(attrs) != fmt.Sprint(want) {
			t.Fatalf("sector %d zeroed: logged %v, want %v", sector, attrs, want)
		}
	}
}

// Zeros that do not fill a whole file-aligned sector are no sign of a torn
// write, so they are corruption like any other damage.
func TestFileStoreUnalignedZerosAreCorrupt(t *testing.T) {
	data, _, _ := recordLog(t, 60)
	path := tempLog(t)
	for _, zero := range [][2]int{{513, 1024}, {512, 1023}, {700, 1200}} {
		bad := bytes.Clone(data)
		clear(bad[zero[0]:zero[1]])
		// The log's own bytes next to the run may be zeros; these are not.
		bad[zero[0]-1], bad[zero[1]] = 0xa5, 0xa5
		checkCorrupt(t, path, bad)
	}
}

// Only zeros between the damage and the next valid record show a torn
// write: a damaged record early in the log, followed by valid records, is
// corruption even if a zeroed sector comes later.
func TestFileStoreZerosAfterCorruption(t *testing.T) {
	data, starts, _ := recordLog(t, 60)
	if starts[3] >= 1024 || starts[59] < 1536+64 {
		t.Fatalf("record layout %v does not suit the test", starts)
	}
	bad := bytes.Clone(data)
	bad[starts[2]+9] ^= 0x5a
	clear(bad[1024:1536])
	checkCorrupt(t, tempLog(t), bad, fmt.Sprintf("offset %d", starts[2]), fmt.Sprintf("from offset %d", starts[3]))
}

// The error surfaces from NewFileStore, before any Manager exists, and a
// Manager over the recovered store loads the kept records.
func TestFileStoreCorruptBeforeManager(t *testing.T) {
	ctx := context.Background()
	data, starts, as := recordLog(t, 5)
	path := tempLog(t)
	data[starts[1]+9] ^= 1
	must(t, os.WriteFile(path, data, 0o600))
	if _, err := attach.NewFileStore(path); !errors.Is(err, attach.ErrCorrupt) {
		t.Fatalf("NewFileStore: %v, want ErrCorrupt", err)
	}
	s := openFileStore(t, path, attach.WithTruncateAtCorruption())
	m, err := attach.NewManager(ctx, s)
	must(t, err)
	if got := m.List(); len(got) != 1 || got[0].VolumeID != as[0].VolumeID {
		t.Fatalf("recovered %+v, want only %s", got, as[0].VolumeID)
	}
	must(t, m.Close())
	must(t, s.Close())
}
