package routeros

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// wprop is one property as the device holds it. group makes it start a
// new line, as the device lays out line groups.
type wprop struct {
	key, val string
	quoted   bool
	group    bool
}

func (p wprop) String() string {
	if !p.quoted {
		return p.key + "=" + p.val
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return p.key + `="` + r.Replace(p.val) + `"`
}

type wentry struct {
	index int
	flags string
	props []wprop
}

// logical is one line before wrapping: its text and, per byte, whether
// the byte is the space between two properties or part of a key
// (including its '=').
type logical struct {
	text     []byte
	sep, key []bool
}

func (l *logical) add(p wprop) {
	if len(l.text) > 0 {
		l.text = append(l.text, ' ')
		l.sep = append(l.sep, true)
		l.key = append(l.key, false)
	}
	s := p.String()
	for i := 0; i < len(s); i++ {
		l.text = append(l.text, s[i])
		l.sep = append(l.sep, false)
		l.key = append(l.key, i <= len(p.key))
	}
}

// wrapDetail renders entries the way RouterOS wraps `print detail` at a
// console width, written independently of the parser: the index
// right-aligned and the flag letters, then the properties separated by
// one space; a property marked group starts a new line. A line longer
// than width breaks at its last space that still fits (so the broken line
// is shorter than width), and when it has none past its indentation it is
// cut at the width, filling the line; a space right after a cut is
// dropped. Continuation lines are indented by indent.
//
// lossy reports output that no reader can read back exactly (see
// entryBuilder.join): a continuation that starts with a space, a space
// dropped after a cut that is not between two properties, or a cut
// inside a key.
func wrapDetail(entries []wentry, width, indent int) (out string, lossy bool) {
	var b strings.Builder
	pad := strings.Repeat(" ", indent)
	for n, e := range entries {
		if n > 0 && n%2 == 0 {
			b.WriteString("\r\n") // blank separators on some, not all
		}
		prefix := fmt.Sprintf("%2d %-3s", e.index, strings.Join(strings.Split(e.flags, ""), " "))
		if len(prefix) < indent && indent <= 15 {
			prefix += strings.Repeat(" ", indent-len(prefix))
		}
		var lines []*logical
		for i, p := range e.props {
			if i == 0 || p.group {
				lines = append(lines, &logical{})
			}
			lines[len(lines)-1].add(p)
		}
		lead := prefix
		for _, l := range lines {
			start := 0
			for {
				room := width - len(lead)
				if len(l.text)-start <= room {
					b.WriteString(lead + string(l.text[start:]) + "\r\n")
					break
				}
				if i := strings.LastIndexByte(string(l.text[start:start+room]), ' '); i > 0 {
					b.WriteString(lead + string(l.text[start:start+i]) + "\r\n")
					start += i + 1
				} else {
					b.WriteString(lead + string(l.text[start:start+room]) + "\r\n")
					start += room
					lossy = lossy || l.key[start] && l.key[start-1]
					if l.text[start] == ' ' {
						lossy = lossy || !l.sep[start]
						start++
					}
				}
				lead = pad
				if start == len(l.text) {
					break
				}
				lossy = lossy || l.text[start] == ' '
			}
			lead = pad
		}
	}
	return b.String(), lossy
}

var wrapKeys = []string{"type", "slot", "slot-default", "parent", "fs", "model", "size", "free",
	"mount-filesystem", "nvme-tcp-export", "nvme-tcp-server-port", "nvme-tcp-server-nqn",
	"nvme-tcp-server-allow-host-name", "file-path", "file-size", "comment", "x", "a.b"}

func randString(r *rand.Rand, alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// groupDigits renders n with digit groups, as the device prints sizes.
func groupDigits(n int64) string {
	s := fmt.Sprint(n)
	var g []string
	for len(s) > 3 {
		g = append([]string{s[len(s)-3:]}, g...)
		s = s[:len(s)-3]
	}
	return strings.Join(append([]string{s}, g...), " ")
}

// randProp draws a value of one of the shapes RouterOS prints.
func randProp(r *rand.Rand, key string) wprop {
	const path = "abcdefghijklmnopqrstuvwxyzABCZ0123456789/._-"
	p := wprop{key: key, group: r.IntN(4) == 0}
	switch r.IntN(9) {
	case 0: // digit groups
		p.val = groupDigits(r.Int64N(1 << 50))
	case 1:
		p.val = "." + randString(r, "abcimg", 1+r.IntN(4)) + " file"
	case 2: // long unquoted path
		p.val = "/" + randString(r, path, 1+r.IntN(180))
	case 3: // long quoted NQN-like, with escapes
		p.val, p.quoted = randString(r, `nqn.2000-02.com:pvc-abcdef0123456789"\`, r.IntN(200)), true
	case 4: // short quoted with spaces and '='
		p.val, p.quoted = randString(r, `ab c="\=;$[]`, r.IntN(12)), true
	case 5:
		p.val, p.quoted = "", true
	case 6:
		p.val = []string{"yes", "no", "-", "none", "50.0GiB", "4420", "2025-11-11 16:47:07"}[r.IntN(7)]
	case 7: // long quoted text of words
		var words []string
		for range 1 + r.IntN(20) {
			words = append(words, randString(r, "abcdefghijklmnopqrstuvwxyz0123456789-", 1+r.IntN(12)))
		}
		p.val, p.quoted = strings.Join(words, " "), true
	default:
		p.val = randString(r, "abcdefghijklmnopqrstuvwxyz0123456789-", 1+r.IntN(40))
	}
	return p
}

// checkWrapRoundTrip parses out and compares it with entries.
func checkWrapRoundTrip(t *testing.T, entries []wentry, out string, width int) {
	t.Helper()
	got, err := ParseDetail(out, width)
	if err != nil {
		t.Fatalf("width %d: %v\n%s", width, err, out)
	}
	if len(got) != len(entries) {
		t.Fatalf("got %d entries, want %d\n%s", len(got), len(entries), out)
	}
	for i, e := range entries {
		keys, props := []string{}, map[string]string{}
		for _, p := range e.props {
			keys = append(keys, p.key)
			props[p.key] = p.val
		}
		g := got[i]
		if g.Index != e.index || g.Flags != e.flags || !reflect.DeepEqual(g.Keys, keys) || !reflect.DeepEqual(g.Props, props) {
			t.Fatalf("width %d entry %d:\n got %d %q %q\nwant %d %q %q\n%s",
				width, i, g.Index, g.Flags, g.Props, e.index, e.flags, props, out)
		}
	}
}

func TestParseDetailWrapProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var cuts, breaks, lossy int // cuts: lines cut at the width; breaks: values broken at a space
	for iter := 0; iter < 3000; iter++ {
		width := 40 + r.IntN(161)
		// Continuation lines are indented at the property column or at
		// 15; the longest key must fit a line so that no cut lands in a
		// key.
		indent := 7
		if width-15 >= 40 && r.IntN(2) == 0 {
			indent = 15
		}
		var entries []wentry
		for i := 0; i < 1+r.IntN(4); i++ {
			e := wentry{index: i, flags: []string{"", "X", "D", "XD", "*"}[r.IntN(5)]}
			for _, k := range r.Perm(len(wrapKeys))[:1+r.IntN(len(wrapKeys))] {
				e.props = append(e.props, randProp(r, wrapKeys[k]))
			}
			entries = append(entries, e)
		}
		out, lost := wrapDetail(entries, width, indent)
		if lost {
			lossy++
			continue
		}
		prevFull := false
		for _, l := range strings.Split(out, "\r\n") {
			if len(l) > width {
				t.Fatalf("wrapper produced a %d-byte line at width %d: %q", len(l), width, l)
			}
			if c := strings.TrimLeft(l, " "); len(c) < len(l) && c != "" && !keyAt(c, 0) {
				if prevFull {
					cuts++
				} else {
					breaks++
				}
			}
			prevFull = len(l) == width
		}
		checkWrapRoundTrip(t, entries, out, width)
	}
	if cuts < 1000 || breaks < 1000 {
		t.Errorf("only %d cuts and %d breaks at a space inside values; the test would not prove the joining rule", cuts, breaks)
	}
	t.Logf("%d cuts, %d breaks at a space inside values, %d lossy layouts skipped", cuts, breaks, lossy)
	if lossy > 300 {
		t.Errorf("%d of 3000 layouts were lossy; the test covers too little", lossy)
	}
}

// TestWrapDetailSplitsValues proves the property test's wrapper breaks
// at spaces and cuts runs that have none, so the test cannot pass
// vacuously.
func TestWrapDetailSplitsValues(t *testing.T) {
	out, lossy := wrapDetail([]wentry{{index: 0, props: []wprop{
		{key: "file-path", val: "/storage-pool/k8s/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img"},
		{key: "size", val: "53 687 091 200"},
		{key: "nvme-tcp-server-nqn", val: "nqn.2000-02.com.mikrotik:pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f", quoted: true},
	}}}, 60, 15)
	want := " 0             file-path=/storage-pool/k8s/pvc-ccdecfad-a8bf\r\n" +
		"               -572e-9120-464c4d99f12f.img size=53 687 091\r\n" +
		"               200\r\n" +
		"               nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik\r\n" +
		"               :pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f\"\r\n"
	if out != want || lossy {
		t.Fatalf("wrapDetail (lossy %v):\n%s\nwant:\n%s", lossy, out, want)
	}
	got, err := ParseDetail(out, 60)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := got[0].Get("file-path"); v != "/storage-pool/k8s/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img" {
		t.Errorf("file-path = %q", v)
	}
	if v, _ := got[0].Get("size"); v != "53 687 091 200" {
		t.Errorf("size = %q", v)
	}
}

// FuzzParseDetailWrap wraps one entry made of the fuzzed values at the
// fuzzed width as the device does and requires ParseDetail to read every
// value back. vals holds one value per line; a value with a space, a
// quote or '=' is printed quoted, as RouterOS does (digit groups and
// "<ext> file" excepted, which stay bare).
func FuzzParseDetailWrap(f *testing.F) {
	f.Add("53 687 091 200\n/storage-pool/k8s/pvc-test-123.img\nnqn.2000-02.com.mikrotik:pvc-test-123", 40, 15)
	f.Add(".img file\n10.0GiB\n2025-11-11 14:32:41", 29, 5)
	f.Fuzz(func(t *testing.T, vals string, width, indent int) {
		width = 40 + abs(width)%161
		indent = []int{4, 5, 7, 15}[abs(indent)%4]
		e := wentry{index: 0}
		for i, v := range strings.Split(vals, "\n") {
			if i >= len(wrapKeys) {
				break
			}
			if !wrapValue(v) {
				return
			}
			p := wprop{key: wrapKeys[i], val: v, group: i%5 == 4}
			p.quoted = strings.ContainsAny(v, "\"= \\") && !bareWithSpaces(v) || v == ""
			e.props = append(e.props, p)
		}
		out, lossy := wrapDetail([]wentry{e}, width, indent)
		if lossy {
			return
		}
		checkWrapRoundTrip(t, []wentry{e}, out, width)
	})
}

func abs(n int) int {
	if n < 0 {
		if n = -n; n < 0 {
			return 0
		}
	}
	return n
}

// wrapValue accepts what the device can print in a value: printable
// ASCII, no leading or trailing space.
func wrapValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < ' ' || v[i] > '~' {
			return false
		}
	}
	return len(v) < 300 && strings.TrimSpace(v) == v
}

// bareWithSpaces reports the unquoted values with spaces the device
// prints: digit groups, "<ext> file" and timestamps; single spaces only.
func bareWithSpaces(v string) bool {
	if strings.Contains(v, "  ") || strings.ContainsAny(v, "\"=\\") {
		return false
	}
	if _, err := ParseNumber(v); err == nil {
		return true
	}
	if ext, ok := strings.CutSuffix(v, " file"); ok && strings.HasPrefix(ext, ".") && !strings.Contains(ext, " ") {
		return true
	}
	_, err := ParseTime(v, nil)
	return err == nil
}
