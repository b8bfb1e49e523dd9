package routeros

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// wprop is one property as the device holds it.
type wprop struct {
	key, val string
	quoted   bool
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

// wrapDetail renders entries the way RouterOS wraps `print detail` at a
// console width: the index right-aligned, flag letters, then properties;
// a property that fits stays whole on the current line, one that does not
// starts a new line indented by indent, and one longer than a whole line
// is split at the width. With fill set, a long property is started on the
// current line when the split still falls inside its value (both
// placements must parse the same).
func wrapDetail(entries []wentry, width, indent int, fill bool) string {
	var out strings.Builder
	for n, e := range entries {
		if n > 0 && n%2 == 0 {
			out.WriteString("\r\n") // blank separators on some, not all
		}
		line := fmt.Sprintf("%2d %-3s", e.index, strings.Join(strings.Split(e.flags, ""), " "))
		if len(line) < indent && indent <= 15 {
			line += strings.Repeat(" ", indent-len(line))
		}
		empty := true // no property on line yet
		emit := func() {
			out.WriteString(line + "\r\n")
			line, empty = strings.Repeat(" ", indent), true
		}
		for _, p := range e.props {
			s := p.String()
			sep := " "
			if empty {
				sep = ""
			}
			switch {
			case len(line)+len(sep)+len(s) <= width:
				line += sep + s
				empty = false
				continue
			case indent+len(s) <= width:
				emit()
				line += s
				empty = false
				continue
			}
			room := width - len(line) - len(sep)
			if !empty && !(fill && room > len(p.key)+2) {
				emit()
				sep = ""
			}
			line += sep
			for {
				room := width - len(line)
				if len(s) <= room {
					line += s
					break
				}
				line += s[:room]
				s = s[room:]
				emit()
			}
			empty = false
		}
		out.WriteString(line + "\r\n")
	}
	return out.String()
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

// randProp draws a value of one of the shapes RouterOS prints. Long
// values contain no spaces, since a split that falls on a space cannot be
// told from indentation (see entryBuilder.join).
func randProp(r *rand.Rand, key string) wprop {
	p := randShape(r, key)
	if strings.Contains(p.val, " ") && len(p.String()) > 33 {
		// would be split at width 40 and indent 7; pick a spaceless one
		return wprop{key: key, val: randString(r, "abcdefghijklmnopqrstuvwxyz0123456789-", 1+r.IntN(40))}
	}
	return p
}

func randShape(r *rand.Rand, key string) wprop {
	const path = "abcdefghijklmnopqrstuvwxyzABCZ0123456789/._-"
	switch r.IntN(8) {
	case 0: // digit groups
		n := r.Int64N(1 << 50)
		s := fmt.Sprint(n)
		var g []string
		for len(s) > 3 {
			g = append([]string{s[len(s)-3:]}, g...)
			s = s[:len(s)-3]
		}
		return wprop{key: key, val: strings.Join(append([]string{s}, g...), " ")}
	case 1:
		return wprop{key: key, val: "." + randString(r, "abcimg", 1+r.IntN(4)) + " file"}
	case 2: // long unquoted path
		return wprop{key: key, val: "/" + randString(r, path, 1+r.IntN(180))}
	case 3: // long quoted NQN-like, with escapes
		return wprop{key: key, val: randString(r, `nqn.2000-02.com:pvc-abcdef0123456789"\`, r.IntN(200)), quoted: true}
	case 4: // short quoted with spaces and '='
		return wprop{key: key, val: randString(r, `ab c="\=;$[]`, r.IntN(12)), quoted: true}
	case 5:
		return wprop{key: key, val: "", quoted: true}
	case 6:
		return wprop{key: key, val: []string{"yes", "no", "-", "none", "50.0GiB", "4420"}[r.IntN(6)]}
	default:
		return wprop{key: key, val: randString(r, "abcdefghijklmnopqrstuvwxyz0123456789-", 1+r.IntN(40))}
	}
}

func TestParseDetailWrapProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	splits := 0 // continuation lines that carry the rest of a value
	for iter := 0; iter < 3000; iter++ {
		width := 40 + r.IntN(161)
		// Continuation lines are indented at the property column or at
		// 15; keys must fit a line so that a split lands in a value.
		indent := 7
		if width-15 >= 40 && r.IntN(2) == 0 {
			indent = 15
		}
		fill := r.IntN(2) == 0
		var entries []wentry
		for i := 0; i < 1+r.IntN(4); i++ {
			e := wentry{index: i, flags: []string{"", "X", "D", "XD", "*"}[r.IntN(5)]}
			for _, k := range r.Perm(len(wrapKeys))[:1+r.IntN(len(wrapKeys))] {
				e.props = append(e.props, randProp(r, wrapKeys[k]))
			}
			entries = append(entries, e)
		}
		out := wrapDetail(entries, width, indent, fill)
		for _, l := range strings.Split(out, "\r\n") {
			if t := strings.TrimLeft(l, " "); len(t) < len(l) && t != "" && !keyAt(t, 0) {
				splits++
			}
			if len(l) > width {
				t.Fatalf("wrapper produced a %d-byte line at width %d: %q", len(l), width, l)
			}
		}
		got, err := ParseDetail(out)
		if err != nil {
			t.Fatalf("width %d indent %d fill %v: %v\n%s", width, indent, fill, err, out)
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
				t.Fatalf("width %d indent %d fill %v entry %d:\n got %d %q %q\nwant %d %q %q\n%s",
					width, indent, fill, i, g.Index, g.Flags, g.Props, e.index, e.flags, props, out)
			}
		}
	}
	if splits < 1000 {
		t.Errorf("only %d mid-value splits generated; the test would not prove the joining rule", splits)
	}
}

// TestWrapDetailSplitsValues proves the property test exercises
// mid-value splits, so it cannot pass vacuously.
func TestWrapDetailSplitsValues(t *testing.T) {
	out := wrapDetail([]wentry{{index: 0, props: []wprop{
		{key: "file-path", val: "/storage-pool/k8s/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img"},
		{key: "nvme-tcp-server-nqn", val: "nqn.2000-02.com.mikrotik:pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f", quoted: true},
	}}}, 60, 15, false)
	want := " 0             file-path=/storage-pool/k8s/pvc-ccdecfad-a8bf\r\n" +
		"               -572e-9120-464c4d99f12f.img\r\n" +
		"               nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik\r\n" +
		"               :pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f\"\r\n"
	if out != want {
		t.Fatalf("wrapDetail:\n%s\nwant:\n%s", out, want)
	}
	got, err := ParseDetail(out)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := got[0].Get("file-path"); v != "/storage-pool/k8s/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img" {
		t.Errorf("file-path = %q", v)
	}
}
