package routeros

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Seeds beyond the committed corpus in testdata/fuzz.
var detailSeeds = []string{
	"", "Flags: X - disabled\r\n", wrapped80, " 0  slot=\"abc", " 0 X  ;;; c\r\n     a=b\r\n",
	" 0  a=\"\\\"\" b=c d\r\n 1  x=", "\x1b[31m 0\x1b[m a=b\r\n", " 0  size=53 687 0\n    91 200",
}

func checkKey(t *testing.T, k string) {
	t.Helper()
	if !keyAt(k+"=", 0) || len(k) == 0 {
		t.Fatalf("invalid key %q", k)
	}
}

func checkEntriesShape(t *testing.T, entries []Entry) {
	t.Helper()
	for _, e := range entries {
		if len(e.Keys) == 0 || len(e.Keys) != len(e.Props) {
			t.Fatalf("entry %+v: %d keys, %d props", e, len(e.Keys), len(e.Props))
		}
		for _, k := range e.Keys {
			checkKey(t, k)
			if _, ok := e.Props[k]; !ok {
				t.Fatalf("key %q missing from props", k)
			}
		}
		if e.Index < 0 || strings.Trim(e.Flags, "ABCDEFGHIJKLMNOPQRSTUVWXYZ*") != "" {
			t.Fatalf("bad index/flags %d %q", e.Index, e.Flags)
		}
	}
}

// render prints entries on one line each with every value quoted, which
// both parsers must read back unchanged.
func render(entries []Entry) string {
	var b strings.Builder
	esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	for _, e := range entries {
		fmt.Fprintf(&b, "%2d %s", e.Index, e.Flags)
		for _, k := range e.Keys {
			fmt.Fprintf(&b, " %s=\"%s\"", k, esc.Replace(e.Props[k]))
		}
		b.WriteString("\r\n")
	}
	return b.String()
}

func FuzzParseDetail(f *testing.F) {
	for _, s := range detailSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		entries, err := ParseDetail(s, DefaultWidth)
		if err != nil {
			if entries != nil {
				t.Fatal("entries returned with an error")
			}
			return
		}
		checkEntriesShape(t, entries)
		again, err := ParseDetail(render(entries), DefaultWidth)
		if err != nil || !reflect.DeepEqual(again, entries) {
			t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, again, entries)
		}
	})
}

func FuzzParseTerse(f *testing.F) {
	for _, s := range []string{"", " 0 X type=.img file size=1 000\r\n 1 a=\"b\"", " 0 a=\"", "Flags: X\r\n0 a=b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		entries, err := ParseTerse(s)
		if err != nil {
			return
		}
		checkEntriesShape(t, entries)
		again, err := ParseTerse(render(entries))
		if err != nil || !reflect.DeepEqual(again, entries) {
			t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, again, entries)
		}
	})
}

func FuzzParseKV(f *testing.F) {
	for _, s := range []string{"", "  name: rds\r\n", "a:b", "x: 1\n y: 2 3 \n", "\x1b[1mslot:\x1b[m a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseKV(s)
		if err != nil {
			return
		}
		var keys []string
		for k, v := range m {
			checkKey(t, k)
			if v != strings.TrimSpace(v) || strings.ContainsAny(v, "\n\r") {
				t.Fatalf("value %q not trimmed", v)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "%30s: %s\r\n", k, m[k])
		}
		again, err := ParseKV(b.String())
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip: %v\n got %q\nwant %q", err, again, m)
		}
	})
}

func FuzzParseNumber(f *testing.F) {
	for _, s := range []string{"0", "53 687 091 200", "-1", "1 23", "9 223 372 036 854 775 808", " 7 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseNumber(s)
		if err != nil {
			return
		}
		digits := strings.ReplaceAll(strings.TrimSpace(s), " ", "")
		want, perr := strconv.ParseInt(digits, 10, 64)
		if n < 0 || perr != nil || n != want {
			t.Fatalf("ParseNumber(%q) = %d; digits %q parse to %d, %v", s, n, digits, want, perr)
		}
	})
}

func FuzzParseHumanSize(f *testing.F) {
	for _, s := range []string{"50.0GiB", "1024.0MiB", "512B", "1.5TiB", "8.0EiB", "0", "1.GiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseHumanSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseHumanSize(%q) = %d", s, n)
		}
		if again, err := ParseHumanSize(strconv.FormatInt(n, 10) + "B"); err != nil || again != n {
			t.Fatalf("%dB reads back as %d, %v", n, again, err)
		}
	})
}

// FuzzParseValues covers the remaining value parsers: no panics, no
// negative results.
func FuzzParseValues(f *testing.F) {
	for _, s := range []string{"12.8Mbps", "15d2h45m30s", "1d02:03:04", "jan/02/2025 10:30:45", "yes", "1s200ms"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := ParseRate(s); err == nil && r < 0 {
			t.Fatalf("ParseRate(%q) = %d", s, r)
		}
		if d, err := ParseDuration(s); err == nil && d < 0 {
			t.Fatalf("ParseDuration(%q) = %v", s, d)
		}
		_, _ = ParseTime(s, nil)
		_, _ = ParseBool(s)
		_, _ = Classify(s, s, 0)
	})
}

func onlyBytes(s, extra string, upper bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || upper && c >= 'A' && c <= 'Z' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

func FuzzValidate(f *testing.F) {
	for _, s := range append([]string{"pvc-1", "/storage-pool/k8s/a.img", "nqn.2000-02.com.mikrotik:pvc-1", "storage-pool"}, hostile[:20]...) {
		f.Add(s, 4420)
	}
	f.Fuzz(func(t *testing.T, s string, port int) {
		if ValidSlot(s) == nil && (!onlyBytes(s, "-", false) || len(s) > 63 || s[0] == '-') {
			t.Fatalf("ValidSlot accepted %q", s)
		}
		if ValidPath(s) == nil && (!onlyBytes(s, "/._-", true) || len(s) > 255 || s[0] != '/' ||
			strings.Contains(s+"/", "/./") || strings.Contains(s+"/", "/../") || strings.Contains(s, "//") || strings.HasSuffix(s, "/")) {
			t.Fatalf("ValidPath accepted %q", s)
		}
		if ValidFileName(s) == nil && (!onlyBytes(s, "/._-", true) || len(s) > 255 || s[0] == '/' ||
			strings.Contains("/"+s+"/", "/./") || strings.Contains("/"+s+"/", "/../") || strings.Contains(s, "//") || strings.HasSuffix(s, "/")) {
			t.Fatalf("ValidFileName accepted %q", s)
		}
		if ValidNQN(s) == nil && (!onlyBytes(s, ".:_-", false) || len(s) > 223 || !strings.HasPrefix(s, "nqn.")) {
			t.Fatalf("ValidNQN accepted %q", s)
		}
		if ValidPool(s) == nil && (!onlyBytes(s, "._-", true) || len(s) > 63 || strings.IndexByte("._-", s[0]) >= 0) {
			t.Fatalf("ValidPool accepted %q", s)
		}
		if q, err := Quote(s); err == nil && (q != `"`+s+`"` || !onlyBytes(s, "/._:^~+-", true)) {
			t.Fatalf("Quote(%q) = %q", s, q)
		}
		if ValidPort(port) == nil && (port < 1 || port > 65535) {
			t.Fatalf("ValidPort accepted %d", port)
		}
	})
}
