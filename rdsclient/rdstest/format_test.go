package rdstest

import (
	"strings"
	"testing"

	"github.com/srvlab/rds-csi/internal/routeros"
)

// longestKey is the longest key the fake prints; below this much room on
// a continuation line a key itself is cut, which no reader can undo.
const longestKey = len("nvme-tcp-server-allow-host-name=")

// FuzzWrapEntry lays out a disk entry of fuzzed values at a fuzzed width
// and requires the client's parser to read every value back, so the fake
// and the parser keep to the same wrapping rule: break at the last space
// that fits, cut a run that has none at the width. The comment is free
// text of short words, whose spaces are breaks inside a quoted value.
func FuzzWrapEntry(f *testing.F) {
	f.Add("pvc-test-123", "/storage-pool/test.img", "made by a test", int64(53687091200), 46)
	f.Add("pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f", "/storage-pool/k8s/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img",
		`a "quoted" $word and \ back`, int64(1<<40+12345), 80)
	f.Fuzz(func(t *testing.T, slot, path, comment string, size int64, width int) {
		if routeros.ValidSlot(slot) != nil || routeros.ValidPath(path) != nil || size < 0 || !words(comment) {
			return
		}
		width = 15 + longestKey + abs(width)%200
		fields := props{
			{key: "type", raw: "file", group: true},
			{key: "slot", raw: slot, kind: kQuoted},
			{key: "comment", raw: comment, kind: kQuoted},
			{key: "model", raw: path, kind: kQuoted, group: true},
			{key: "size", raw: itoa(size), kind: kBytes, group: true},
			{key: "mount-filesystem", raw: "yes"},
			{key: "nvme-tcp-export", raw: "yes", group: true},
			{key: "nvme-tcp-server-port", raw: "4420", kind: kNumber},
			{key: "nvme-tcp-server-nqn", raw: "nqn.2000-02.com.mikrotik:" + slot, kind: kQuoted, group: true},
			{key: "nvme-tcp-server-allow-host-name", raw: "", kind: kQuoted, group: true},
			{key: "file-path", raw: path, group: true},
			{key: "file-size", raw: itoa(size), kind: kHuman, group: true},
			{key: "last-modified", raw: "2025-11-11 14:32:41", kind: kTime},
		}
		var b strings.Builder
		wrapEntry(" 0  ", 15, width, fields, &b)
		out := b.String()
		for _, l := range strings.Split(strings.TrimSuffix(out, crlf), crlf) {
			if len(l) > width || strings.TrimSpace(l) == "" {
				t.Fatalf("width %d: line %q is too wide or empty:\n%s", width, l, out)
			}
		}
		entries, err := routeros.ParseDetail(out, width)
		if err != nil || len(entries) != 1 {
			t.Fatalf("width %d: ParseDetail: %d entries, %v\n%s", width, len(entries), err, out)
		}
		if len(entries[0].Keys) != len(fields) {
			t.Fatalf("width %d: keys %q\n%s", width, entries[0].Keys, out)
		}
		for _, p := range fields {
			if v, _ := entries[0].Get(p.key); v != shownValue(p) {
				t.Fatalf("width %d: %s = %q, printed as %q\n%s", width, p.key, v, p.detailText(), out)
			}
		}
	})
}

// words accepts printable ASCII words of at most 10 bytes (20 once escaped) separated by
// single spaces: no run of text can then fill a line, so no break is
// ambiguous (see the joining rule in internal/routeros).
func words(s string) bool {
	if s != strings.TrimSpace(s) || strings.Contains(s, "  ") {
		return false
	}
	for _, w := range strings.Split(s, " ") {
		if len(w) > 10 {
			return false
		}
		for i := 0; i < len(w); i++ {
			if w[i] <= ' ' || w[i] > '~' {
				return false
			}
		}
	}
	return true
}

func abs(n int) int {
	if n < 0 && -n > 0 {
		return -n
	}
	return max(n, 0)
}
