package rdstest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/internal/routeros"
)

// The samples below are device captures (rdsclient/docs/device.md,
// "Output format"), with CRLF line ends as the device sends them.
func crlfLines(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n" }

var sample32 = crlfLines(
	` 0  type=file slot="pvc-test-123" slot-default="" parent="" fs=-`,
	`               model="/storage-pool/test.img"`,
	`               size=53 687 091 200 mount-filesystem=yes mount-read-only=no`,
	`               compress=no sector-size=512 raid-master=none`,
	`               nvme-tcp-export=yes nvme-tcp-server-port=4420`,
	`               nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:pvc-test-123"`,
	`               nvme-tcp-server-allow-host-name="" iscsi-export=no`,
	`               nfs-sharing=no smb-sharing=no media-sharing=no`,
	`               media-interface=none swap=no`,
	`               file-path=/storage-pool/test.img`,
	`               file-size=50.0GiB file-offset=0`,
)

var sample38 = crlfLines(
	` 0   name=storage-pool/k8s type=directory`,
	`     last-modified=2025-11-11 16:47:07`,
	``,
	` 1   name=storage-pool/k8s/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img`,
	`     type=.img file size=10.0GiB last-modified=2025-11-11 14:32:41`,
)

var sample39 = crlfLines(
	`                  slot:    storage-pool`,
	`              read-ops:         243 401`,
	`   read-ops-per-second:               0`,
	`            read-bytes:  33 131 503 616`,
	`             read-rate:            0bps`,
	`             read-time:             0ms`,
	`             write-ops:      17 667 231`,
	`  write-ops-per-second:              76`,
	`           write-bytes: 515 659 673 600`,
	`            write-rate:        12.8Mbps`,
	`            write-time:             0ms`,
	`         in-flight-ops:               0`,
	`           active-time:             0ms`,
	`             wait-time:             0ms`,
)

func newTestServer(t *testing.T, opts ...Option) *Server {
	t.Helper()
	s, err := NewServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// run executes a line without SSH and requires success.
func run(t *testing.T, s *Server, line string, width int) string {
	t.Helper()
	r := s.execute(line, width)
	if r.status != 0 {
		t.Fatalf("%s: status %d: %q", line, r.status, r.stdout)
	}
	return r.stdout
}

func TestGoldenDiskDetail(t *testing.T) {
	s := newTestServer(t)
	run(t, s, `/disk add type=file file-path=/storage-pool/test.img file-size=50G slot=pvc-test-123 `+
		`nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:pvc-test-123`, 80)
	for _, cmd := range []string{"/disk print detail where slot=pvc-test-123", `/disk/print detail where slot~"^pvc-"`} {
		got := run(t, s, cmd, 80)
		want := diskLegend + "\r\n" + sample32 + "\r\n"
		if got != want {
			t.Errorf("%s:\ngot:\n%s\nwant:\n%s", cmd, got, want)
		}
	}
	// A miss prints only the legend.
	if got := run(t, s, "/disk print detail where slot=nope", 80); got != diskLegend+"\r\n" {
		t.Errorf("miss: got %q", got)
	}
}

func TestGoldenFileDetail(t *testing.T) {
	s := newTestServer(t)
	const name = "storage-pool/k8s/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img"
	run(t, s, "/disk add type=file file-path=/"+name+" file-size=10G slot=pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f", 80)
	set := func(rel string, tm time.Time) {
		if err := os.Chtimes(filepath.Join(s.DataDir(), rel), tm, tm); err != nil {
			t.Fatal(err)
		}
	}
	set(name, time.Date(2025, 11, 11, 14, 32, 41, 0, time.Local))
	set("storage-pool/k8s", time.Date(2025, 11, 11, 16, 47, 7, 0, time.Local))
	got := run(t, s, `/file print detail where name~"^storage-pool/k8s"`, 80)
	if want := sample38 + "\r\n"; got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestGoldenMonitorTraffic(t *testing.T) {
	s := newTestServer(t)
	s.SetTraffic("storage-pool", Traffic{ReadOps: 243401, ReadBytes: 33131503616, WriteOps: 17667231,
		WriteBytes: 515659673600, WriteRateBits: 12_800_000,
		ReadMerges: 1024, WriteMerges: 2_500_000, DiscardOps: 7, DiscardBytes: 1 << 30, FlushOps: 3})
	s.setOpsPerSecond("storage-pool", 0, 76)
	got := run(t, s, "/disk monitor-traffic storage-pool once", 80)
	// The captured keys are printed as captured, in their order, with the
	// further keys (rdsclient/docs/device.md, "Commands used"; order
	// chosen) in between and aligned the same way.
	further := [][2]string{
		{"read-merges", "1 024"}, {"write-merges", "2 500 000"},
		{"discard-ops", "7"}, {"discard-merges", "0"}, {"discard-bytes", "1 073 741 824"}, {"discard-time", "0ms"},
		{"flush-ops", "3"}, {"flush-time", "0ms"},
	}
	var captured, rest []string
	for _, line := range strings.SplitAfter(got, "\r\n") {
		key, _, _ := strings.Cut(strings.TrimLeft(line, " "), ":")
		if slices.ContainsFunc(further, func(kv [2]string) bool { return kv[0] == key }) {
			rest = append(rest, line)
		} else if line != "" {
			captured = append(captured, line)
		}
	}
	if c := strings.Join(captured, ""); c != sample39 {
		t.Errorf("captured keys:\n%s\nwant:\n%s", c, sample39)
	}
	var want []string
	for _, kv := range further {
		want = append(want, fmt.Sprintf("%22s:%16s\r\n", kv[0], kv[1]))
	}
	if r, w := strings.Join(rest, ""), strings.Join(want, ""); r != w {
		t.Errorf("further keys:\n%s\nwant:\n%s\nfull output:\n%s", r, w, got)
	}
	// The chosen order: merges after a direction's per-second rate,
	// discard and flush between the write group and in-flight-ops.
	var keys []string
	for _, line := range strings.Split(strings.TrimSuffix(got, "\r\n"), "\r\n") {
		key, _, _ := strings.Cut(strings.TrimLeft(line, " "), ":")
		keys = append(keys, key)
	}
	wantKeys := "slot read-ops read-ops-per-second read-merges read-bytes read-rate read-time " +
		"write-ops write-ops-per-second write-merges write-bytes write-rate write-time " +
		"discard-ops discard-merges discard-bytes discard-time flush-ops flush-time " +
		"in-flight-ops active-time wait-time"
	if k := strings.Join(keys, " "); k != wantKeys {
		t.Errorf("keys %s\nwant %s", k, wantKeys)
	}
}

func TestGoldenPoolCapacity(t *testing.T) {
	const capacity, used = 7949127950336, 1985531985920
	s := newTestServer(t, WithPool("storage-pool", capacity))
	// Any file in the pool counts at its apparent size, disk or not.
	f, err := os.Create(filepath.Join(s.DataDir(), "storage-pool", "other.img"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Truncate(f.Name(), used); err != nil {
		t.Fatalf("sparse file of %d bytes: %v", int64(used), err)
	}
	got := run(t, s, `/disk print detail where mount-point="storage-pool"`, 80)
	want := diskLegend + "\r\n" + crlfLines(
		` 0  slot=storage-pool type=partition mount-point=storage-pool file-system=btrfs`,
		`               size=7 949 127 950 336 free=5 963 595 964 416 use=25%`,
	) + "\r\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestGoldenSystem(t *testing.T) {
	s := newTestServer(t)
	if got := run(t, s, "/system identity print", 80); got != "  name: rds\r\n" {
		t.Errorf("identity: %q", got)
	}
	s2 := newTestServer(t, WithIdentity("rds-lab-2"))
	if got := run(t, s2, "/system/identity/print", 80); got != "  name: rds-lab-2\r\n" {
		t.Errorf("identity: %q", got)
	}
	got := run(t, s, "/system resource print", 80)
	for _, want := range []string{"\r\n                  version: 7.16 (stable)\r\n", "                   uptime: "} {
		if !strings.Contains(got, want) {
			t.Errorf("resource print lacks %q:\n%s", want, got)
		}
	}
}

// TestGoldenWrapAtSpaces: at width 40 the console breaks lines at the
// last space that fits, inside digit groups too (size=53 687 091 | 200,
// size=7 | 949 ...), and cuts the path, which has no space, at the width
// (rdsclient/docs/device.md, "Wrapping"). The client's parser reads every
// value back.
func TestGoldenWrapAtSpaces(t *testing.T) {
	s := newTestServer(t, WithPool("storage-pool", 7949127950336))
	run(t, s, `/disk add type=file file-path=/storage-pool/test.img file-size=50G slot=pvc-test-123`, 80)
	got := run(t, s, "/disk print detail", 40)
	want := diskLegend + "\r\n" + crlfLines(
		` 0  slot=storage-pool type=partition`,
		`               mount-point=storage-pool`,
		`               file-system=btrfs size=7`,
		`               949 127 950 336 free=7`,
		`               895 440 859 136 use=1%`,
		``,
		` 1  type=file slot="pvc-test-123"`,
		`               slot-default=""`,
		`               parent="" fs=-`,
		`               model="/storage-pool/test`,
		`               .img" size=53 687 091`,
		`               200 mount-filesystem=yes`,
		`               mount-read-only=no`,
		`               compress=no`,
		`               sector-size=512`,
		`               raid-master=none`,
		`               nvme-tcp-export=no`,
		`               iscsi-export=no`,
		`               nfs-sharing=no`,
		`               smb-sharing=no`,
		`               media-sharing=no`,
		`               media-interface=none`,
		`               swap=no`,
		`               file-path=/storage-pool/t`,
		`               est.img`,
		`               file-size=50.0GiB`,
		`               file-offset=0`,
	) + "\r\n"
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	entries, err := routeros.ParseDetail(got, 40)
	if err != nil || len(entries) != 2 {
		t.Fatalf("ParseDetail: %d entries, %v", len(entries), err)
	}
	for i, kv := range [][2]string{{"size", "7 949 127 950 336"}, {"free", "7 895 440 859 136"}} {
		if v, _ := entries[0].Get(kv[0]); v != kv[1] {
			t.Errorf("pool %d: %s = %q, want %q", i, kv[0], v, kv[1])
		}
	}
	for _, kv := range [][2]string{{"size", "53 687 091 200"}, {"model", "/storage-pool/test.img"}, {"file-path", "/storage-pool/test.img"}} {
		if v, _ := entries[1].Get(kv[0]); v != kv[1] {
			t.Errorf("disk: %s = %q, want %q", kv[0], v, kv[1])
		}
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0", 512: "512", 1024: "1024", 1536: "1.5KiB", 1 << 20: "1024.0KiB", 1<<20 + 1: "1.0MiB",
		1 << 30: "1024.0MiB", 10 << 30: "10.0GiB", 50 << 30: "50.0GiB", 1536 << 20: "1.5GiB",
		1 << 40: "1024.0GiB", 2 << 40: "2.0TiB",
	} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestGroupDigits(t *testing.T) {
	for in, want := range map[string]string{"0": "0", "123": "123", "1234": "1 234", "53687091200": "53 687 091 200", "-1234": "-1 234"} {
		if got := groupDigits(in); got != want {
			t.Errorf("groupDigits(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1": 1, "1K": 1024, "1k": 1024, "1M": 1 << 20, "1G": 1073741824, "50G": 53687091200, "2T": 2 << 40} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "1.5G", "-1", "1P", "1GB", "99999999999T", "0x10"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}

func TestFormatRate(t *testing.T) {
	for n, want := range map[int64]string{0: "0bps", 999: "999bps", 1000: "1.0kbps", 12_800_000: "12.8Mbps", 2_500_000_000: "2.5Gbps"} {
		if got := formatRate(n); got != want {
			t.Errorf("formatRate(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestWrapWidths(t *testing.T) {
	const uuid = "pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f"
	nqn := "nqn.2000-02.com.mikrotik:" + uuid
	path := "/storage-pool/k8s/" + uuid + ".img"
	for _, width := range []int{40, 46, 60, 80, 200} {
		s := newTestServer(t, WithWidth(width))
		run(t, s, "/disk add type=file file-path="+path+" file-size=10G slot="+uuid+
			" nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn="+nqn, width)
		out := run(t, s, "/disk print detail where slot="+uuid, width)
		if !strings.HasSuffix(out, "\r\n") || strings.Contains(strings.ReplaceAll(out, "\r\n", ""), "\n") {
			t.Fatalf("width %d: lines must end in CRLF: %q", width, out)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n")
		var content strings.Builder
		for i, l := range lines {
			if len(l) > width {
				t.Errorf("width %d: line %d has %d columns: %q", width, i, len(l), l)
			}
			if i >= 2 && l != "" && !strings.HasPrefix(l, strings.Repeat(" ", 15)) {
				t.Errorf("width %d: continuation line not indented 15: %q", width, l)
			}
			if i >= 1 {
				content.WriteString(l)
			}
		}
		// Nothing is lost or reordered: the entry's text without blanks
		// equals the properties' text without blanks.
		s.st.mu.Lock()
		item := s.st.diskItem(s.st.diskBySlot(uuid))
		s.st.mu.Unlock()
		var all strings.Builder
		all.WriteString("0")
		for _, p := range item {
			all.WriteString(p.detailText())
		}
		squash := func(x string) string { return strings.ReplaceAll(x, " ", "") }
		if squash(content.String()) != squash(all.String()) {
			t.Errorf("width %d: content changed:\n%s\nvs\n%s", width, squash(content.String()), squash(all.String()))
		}
		whole := func(text string) bool {
			for _, l := range lines {
				if strings.Contains(l, text) {
					return true
				}
			}
			return false
		}
		// Long values split inside the value below 200; at 200 they
		// stay whole.
		for _, v := range []string{`nvme-tcp-server-nqn="` + nqn + `"`, "file-path=" + path, `model="` + path + `"`} {
			if got, want := whole(v), width == 200; got != want {
				t.Errorf("width %d: %s whole on one line = %v, want %v\n%s", width, v, got, want, out)
			}
		}
		// A property without a space that fits a continuation line is
		// never split: the space before it is a better break than a cut.
		for _, p := range item {
			if txt := p.detailText(); len(txt) <= width-15 && !strings.Contains(txt, " ") && !whole(txt) {
				t.Errorf("width %d: %q split although it fits:\n%s", width, txt, out)
			}
		}
		// Where every key fits a line, the client's parser reads every
		// value back; at 40 the longest key is itself cut, which no
		// reader can undo.
		if width-15 < len("nvme-tcp-server-allow-host-name=") {
			continue
		}
		entries, err := routeros.ParseDetail(out, width)
		if err != nil || len(entries) != 1 {
			t.Fatalf("width %d: ParseDetail: %d entries, %v", width, len(entries), err)
		}
		for _, p := range item {
			if v, _ := entries[0].Get(p.key); v != shownValue(p) {
				t.Errorf("width %d: %s = %q, printed as %q", width, p.key, v, p.detailText())
			}
		}
	}
}

// shownValue is the value a reader of print detail gets for p: the
// printed text without the key, and without quotes for a quoted one.
func shownValue(p prop) string {
	if p.kind == kQuoted {
		return p.raw
	}
	return strings.TrimPrefix(p.detailText(), p.key+"=")
}

func TestCopySparsePaths(t *testing.T) {
	dir := t.TempDir()
	src, err := os.Create(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	const size = 8<<20 + 123
	if err := src.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for off, text := range map[int64]string{0: "a", 3<<20 + 5: "middle", size - 3: "end"} {
		if _, err := src.WriteAt([]byte(text), off); err != nil {
			t.Fatal(err)
		}
	}
	want, _ := os.ReadFile(src.Name())
	for name, copyFn := range map[string]func(dst, src *os.File) error{
		"extents": func(dst, src *os.File) error {
			if done, err := copyExtents(dst, src, size); !done {
				t.Skip("no SEEK_DATA support on this file system")
			} else if err != nil {
				return err
			}
			return nil
		},
		"non-zero blocks": func(dst, src *os.File) error { return copyNonZero(dst, src, size) },
		"copySparse":      copySparse,
	} {
		t.Run(name, func(t *testing.T) {
			dst, err := os.Create(filepath.Join(t.TempDir(), "dst"))
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			if err := dst.Truncate(size + 4096); err != nil {
				t.Fatal(err)
			}
			if err := copyFn(dst, src); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(dst.Name())
			if len(got) != size+4096 || string(got[:size]) != string(want) || !allZero(got[size:]) {
				t.Fatalf("copy differs (len %d)", len(got))
			}
		})
	}
}
