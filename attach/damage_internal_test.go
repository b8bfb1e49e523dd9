package attach

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// bigLog returns a log body of n put records and where each starts.
func bigLog(t testing.TB, n int) (body []byte, starts []int) {
	t.Helper()
	for i := range n {
		a := Attachment{VolumeID: fmt.Sprintf("pvc-%06d", i), Mode: Mode(i%2 + 1), Nodes: []string{fmt.Sprintf("node-%d", i%50)}}
		starts = append(starts, len(body))
		var err error
		if body, err = appendPut(body, &a); err != nil {
			t.Fatal(err)
		}
	}
	return body, starts
}

// Real damage near the start of a large log is passed within the damaged
// record: the scan checksums little beyond the valid records themselves.
func TestInspectCostOfRealDamage(t *testing.T) {
	const n, k = 20000, 3
	body, starts := bigLog(t, n)
	for off := starts[k]; off < starts[k+1]; off++ {
		bad := bytes.Clone(body)
		bad[off] ^= 0xff
		d := newLogDecoder(bad)
		st := logState{vols: map[string]*Attachment{}}
		x := d.replay(0, &st)
		dm := d.inspect(x, len(fileMagic), scanBudget)
		if x != starts[k] || dm.next != starts[k+1] || dm.records != n-k-1 || dm.gaveUp >= 0 || dm.torn() {
			t.Fatalf("byte %d damaged: valid to %d, %+v", off, x, dm)
		}
		// At most a few candidates inside one record claim a length
		// that fits; each costs at most 64 KiB plus a little.
		if dm.checked > 4<<16 {
			t.Fatalf("byte %d damaged: %d bytes checksummed on failed candidates", off, dm.checked)
		}
	}
}

// Content crafted so that every fifth byte starts a plausible 64 KiB
// frame exhausts the budget; the damage is then reported as corruption and
// the file kept, or cut with WithTruncateAtCorruption.
func TestInspectBudget(t *testing.T) {
	good, _ := bigLog(t, 3)
	body := append(bytes.Clone(good), 0xee)
	body = append(body, bytes.Repeat([]byte{0, 0, 1, 0, recPut}, 40000)...)
	body = append(body, good...)

	d := newLogDecoder(body)
	x := d.replay(0, &logState{vols: map[string]*Attachment{}})
	if x != len(good) {
		t.Fatalf("valid to %d, want %d", x, len(good))
	}
	dm := d.inspect(x, len(fileMagic), 1<<20)
	if dm.gaveUp < 0 || dm.next >= 0 || dm.checked > 1<<20 || dm.checked < 1<<20-(1<<16) {
		t.Fatalf("small budget: %+v", dm)
	}
	// With no cap the same scan would checksum 64 KiB at each of ~27000
	// positions (1.7 GiB); the real budget stops it at 256 MiB.
	dm = d.inspect(x, len(fileMagic), scanBudget)
	if dm.gaveUp < 0 || dm.checked > scanBudget {
		t.Fatalf("scanBudget: %+v", dm)
	}
	// Whereas without the crafted stretch the three records after the
	// damage are found.
	plain := append(append(bytes.Clone(good), 0xee), good...)
	d = newLogDecoder(plain)
	if dm := d.inspect(len(good), len(fileMagic), 1<<20); dm.next != len(good)+1 || dm.records != 3 {
		t.Fatalf("plain damage: %+v", dm)
	}

	path := filepath.Join(t.TempDir(), "attach.log")
	content := append([]byte(fileMagic), body...)
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := NewFileStore(path)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "gave up") {
		t.Fatalf("open: %v, want ErrCorrupt after giving up", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, content) {
		t.Fatal("file changed")
	}
	s, err := NewFileStore(path, WithTruncateAtCorruption())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.state.vols) != 3 || s.size != int64(len(fileMagic)+len(good)) {
		t.Fatalf("recovered %d volumes, size %d", len(s.state.vols), s.size)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// FuzzFileStoreOpen opens logs of arbitrary bytes after the magic. The
// open never panics. It either fails with ErrCorrupt, leaving the bytes as
// they were, or loads exactly the state of the valid prefix and cuts the
// file there. Which of the two happens is checked against a brute-force
// reading of the rule: corruption when a valid record starts somewhere
// after the prefix and no file-aligned zero sector lies between. With
// WithTruncateAtCorruption every log opens.
func FuzzFileStoreOpen(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 1<<16 {
			return // keeps the brute force below cheap
		}
		data := append([]byte(fileMagic), body...)
		want := logState{vols: map[string]*Attachment{}}
		valid := decodeLog(body, &want)
		next := -1 // first valid record after the prefix, by brute force
		d := newLogDecoder(body)
		for y := valid + 1; y < len(body) && next < 0; y++ {
			if _, _, _, ok := d.record(y); ok {
				next = y
			}
		}
		zero := false
		for s := 0; next >= 0 && s+sectorSize <= len(data); s += sectorSize {
			if s+sectorSize > len(fileMagic)+valid && s < len(fileMagic)+next &&
				bytes.Count(data[s:s+sectorSize], []byte{0}) == sectorSize {
				zero = true
			}
		}
		wantCorrupt := next >= 0 && !zero

		path := filepath.Join(t.TempDir(), "attach.log")
		for _, opts := range [][]FileOption{nil, {WithTruncateAtCorruption()}} {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := NewFileStore(path, opts...)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) || opts != nil || !wantCorrupt {
					t.Fatalf("open (options %d): %v; valid to %d, next valid %d, zero sector %v", len(opts), err, valid, next, zero)
				}
				if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
					t.Fatal("a log refused as corrupt was changed")
				}
				continue
			}
			if wantCorrupt && opts == nil {
				s.Close()
				t.Fatalf("opened: valid to %d, next valid %d and no zero sector between", valid, next)
			}
			vols := s.state.vols
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(vols, want.vols) {
				t.Fatalf("loaded %v, want the prefix's %v", vols, want.vols)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, data[:len(fileMagic)+valid]) {
				t.Fatalf("log is %d bytes after open, want the %d of the valid prefix", len(got), len(fileMagic)+valid)
			}
		}
	})
}
