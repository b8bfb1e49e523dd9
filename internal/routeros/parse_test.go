package routeros

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

type kv = [][2]string

// wantEntry is the expected result for one entry, keys in order.
type wantEntry struct {
	index int
	flags string
	props kv
}

func checkEntries(t *testing.T, got []Entry, want []wantEntry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Index != w.index || g.Flags != w.flags {
			t.Errorf("entry %d: index/flags = %d/%q, want %d/%q", i, g.Index, g.Flags, w.index, w.flags)
		}
		var keys []string
		props := map[string]string{}
		for _, p := range w.props {
			keys = append(keys, p[0])
			props[p[0]] = p[1]
		}
		if !reflect.DeepEqual(g.Keys, keys) {
			t.Errorf("entry %d keys:\n got %q\nwant %q", i, g.Keys, keys)
		}
		if !reflect.DeepEqual(g.Props, props) {
			t.Errorf("entry %d props:\n got %q\nwant %q", i, g.Props, props)
		}
		for k, v := range props {
			if gv, ok := g.Get(k); !ok || gv != v {
				t.Errorf("entry %d Get(%q) = %q, %v; want %q", i, k, gv, ok, v)
			}
		}
	}
}

func readSample(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// variants returns the sample as printed, with CRLF line endings, and
// preceded by a flags legend.
func variants(s string) map[string]string {
	crlf := strings.ReplaceAll(s, "\n", "\r\n")
	return map[string]string{
		"lf":            s,
		"crlf":          crlf,
		"legend+crlf":   "Flags: X - disabled; D - dynamic\r\n" + crlf,
		"no final eol":  strings.TrimRight(s, "\n"),
		"trailing junk": s + "\n\n\n",
	}
}

var (
	wantDiskOne = []wantEntry{{0, "", kv{
		{"type", "file"}, {"slot", "pvc-test-123"}, {"slot-default", ""}, {"parent", ""}, {"fs", "-"},
		{"model", "/storage-pool/test.img"},
		{"size", "53 687 091 200"}, {"mount-filesystem", "yes"}, {"mount-read-only", "no"},
		{"compress", "no"}, {"sector-size", "512"}, {"raid-master", "none"},
		{"nvme-tcp-export", "yes"}, {"nvme-tcp-server-port", "4420"},
		{"nvme-tcp-server-nqn", "nqn.2000-02.com.mikrotik:pvc-test-123"},
		{"nvme-tcp-server-allow-host-name", ""}, {"iscsi-export", "no"},
		{"nfs-sharing", "no"}, {"smb-sharing", "no"}, {"media-sharing", "no"},
		{"media-interface", "none"}, {"swap", "no"},
		{"file-path", "/storage-pool/test.img"},
		{"file-size", "50.0GiB"}, {"file-offset", "0"},
	}}}
	wantDiskList = []wantEntry{
		{0, "", kv{{"type", "file"}, {"slot", "pvc-test-1"}, {"size", "53 687 091 200"},
			{"file-path", "/storage-pool/test1.img"}, {"file-size", "50.0GiB"},
			{"nvme-tcp-export", "yes"}, {"nvme-tcp-server-port", "4420"},
			{"nvme-tcp-server-nqn", "nqn.2000-02.com.mikrotik:pvc-test-1"}}},
		{1, "", kv{{"type", "file"}, {"slot", "pvc-test-2"}, {"size", "107 374 182 400"},
			{"file-path", "/storage-pool/test2.img"}, {"file-size", "100.0GiB"}}},
	}
	wantPool = []wantEntry{{0, "", kv{{"slot", "storage-pool"}, {"type", "partition"},
		{"mount-point", "storage-pool"}, {"file-system", "btrfs"},
		{"size", "7 949 127 950 336"}, {"free", "5 963 595 964 416"}, {"use", "25%"}}}}
	wantFiles = []wantEntry{
		{0, "", kv{{"name", "storage-pool/k8s"}, {"type", "directory"}, {"last-modified", "2025-11-11 16:47:07"}}},
		{1, "", kv{{"name", "storage-pool/k8s/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img"},
			{"type", ".img file"}, {"size", "10.0GiB"}, {"last-modified", "2025-11-11 14:32:41"}}},
	}
)

func TestParseDetailGolden(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []wantEntry
	}{
		{"disk_detail_one.txt", wantDiskOne},
		{"disk_detail_list.txt", wantDiskList},
		{"pool_detail.txt", wantPool},
		{"file_detail.txt", wantFiles},
	} {
		for name, in := range variants(readSample(t, tc.file)) {
			t.Run(tc.file+"/"+name, func(t *testing.T) {
				got, err := ParseDetail(in, DefaultWidth)
				if err != nil {
					t.Fatal(err)
				}
				checkEntries(t, got, tc.want)
			})
		}
	}
}

// TestParseDetailGoldenValues converts the golden fields the way the
// client will, so the parsers agree with each other on real output.
func TestParseDetailGoldenValues(t *testing.T) {
	one, err := ParseDetail(readSample(t, "disk_detail_one.txt"), DefaultWidth)
	if err != nil {
		t.Fatal(err)
	}
	size, _ := one[0].Get("size")
	fileSize, _ := one[0].Get("file-size")
	if n, err := ParseNumber(size); err != nil || n != 53687091200 {
		t.Errorf("size = %d, %v", n, err)
	}
	if n, err := ParseHumanSize(fileSize); err != nil || n != 50<<30 {
		t.Errorf("file-size = %d, %v", n, err)
	}
	pool, err := ParseDetail(readSample(t, "pool_detail.txt"), DefaultWidth)
	if err != nil {
		t.Fatal(err)
	}
	free, _ := pool[0].Get("free")
	if n, err := ParseNumber(free); err != nil || n != 5963595964416 {
		t.Errorf("free = %d, %v", n, err)
	}
	files, err := ParseDetail(readSample(t, "file_detail.txt"), DefaultWidth)
	if err != nil {
		t.Fatal(err)
	}
	lm, _ := files[1].Get("last-modified")
	if tm, err := ParseTime(lm, nil); err != nil || tm.Format("2006-01-02T15:04:05") != "2025-11-11T14:32:41" {
		t.Errorf("last-modified = %v, %v", tm, err)
	}
}

// Wrapped at width 80 the way RouterOS does it: a line breaks at the
// last space before the width, so a property that does not fit moves to
// the next line; a property longer than a line has no such space and is
// cut at the width, inside its value (rdsclient/docs/device.md,
// "Wrapping").
const wrapped80 = ` 0  type=file slot="pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f" slot-default=""
               parent="" fs=-
               model="/storage-pool/k8s/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f
               .img"
               size=10 737 418 240 mount-filesystem=yes mount-read-only=no
               nvme-tcp-export=yes nvme-tcp-server-port=4420
               nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:pvc-ccdecfad-a8bf-5
               72e-9120-464c4d99f12f"
               nvme-tcp-server-allow-host-name="" iscsi-export=no
               file-path=/storage-pool/k8s/pvc-ccdecfad-a8bf-572e-9120-464c4d99f
               12f.img
               file-size=10.0GiB file-offset=0

 1  type=file slot="pvc-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9" slot-default=""
               file-path=/storage-pool/k8s/pvc-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e
               8f9.img file-size=1024.0MiB
               size=1 073 741 824
`

func TestParseDetailWrapped(t *testing.T) {
	const uuid = "ccdecfad-a8bf-572e-9120-464c4d99f12f"
	want := []wantEntry{
		{0, "", kv{{"type", "file"}, {"slot", "pvc-" + uuid}, {"slot-default", ""},
			{"parent", ""}, {"fs", "-"}, {"model", "/storage-pool/k8s/pvc-" + uuid + ".img"},
			{"size", "10 737 418 240"}, {"mount-filesystem", "yes"}, {"mount-read-only", "no"},
			{"nvme-tcp-export", "yes"}, {"nvme-tcp-server-port", "4420"},
			{"nvme-tcp-server-nqn", "nqn.2000-02.com.mikrotik:pvc-" + uuid},
			{"nvme-tcp-server-allow-host-name", ""}, {"iscsi-export", "no"},
			{"file-path", "/storage-pool/k8s/pvc-" + uuid + ".img"},
			{"file-size", "10.0GiB"}, {"file-offset", "0"}}},
		{1, "", kv{{"type", "file"}, {"slot", "pvc-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"}, {"slot-default", ""},
			{"file-path", "/storage-pool/k8s/pvc-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9.img"},
			{"file-size", "1024.0MiB"}, {"size", "1 073 741 824"}}},
	}
	for name, in := range variants(wrapped80) {
		t.Run(name, func(t *testing.T) {
			got, err := ParseDetail(in, DefaultWidth)
			if err != nil {
				t.Fatal(err)
			}
			checkEntries(t, got, want)
		})
	}
}

func TestParseDetailFlagsLegendsANSI(t *testing.T) {
	in := "Flags: X - DISABLED, I - INACTIVE; D - DYNAMIC;\r\n" +
		"  B - BLOCKED, R - RUNNING\r\n" +
		"Flags: * - default\r\n" +
		"Columns: SLOT, TYPE\r\n" +
		" 0 X type=file slot=\"pvc-a\" file-path=/storage-pool/k8s/pvc-a.img\r\n" +
		"      file-size=1.0GiB\r\n" +
		" 1   D  type=file slot=\"pvc-b\"\r\n" +
		" 2 X D ;;; made by hand\r\n" +
		"       type=partition slot=\"sys\"\r\n" +
		"\x1b[m\x1b[36m 3\x1b[m  \x1b[1mtype\x1b[m=file slot=\x1b[33m\"pvc-\\\"q\\\\\"\x1b[m\r\n" +
		"10 * type=file slot=\"x\" comment=\"a \\\"b\\\" c\"\r\n"
	want := []wantEntry{
		{0, "X", kv{{"type", "file"}, {"slot", "pvc-a"}, {"file-path", "/storage-pool/k8s/pvc-a.img"}, {"file-size", "1.0GiB"}}},
		{1, "D", kv{{"type", "file"}, {"slot", "pvc-b"}}},
		{2, "XD", kv{{"comment", "made by hand"}, {"type", "partition"}, {"slot", "sys"}}},
		{3, "", kv{{"type", "file"}, {"slot", `pvc-"q\`}}},
		{10, "*", kv{{"type", "file"}, {"slot", "x"}, {"comment", `a "b" c`}}},
	}
	got, err := ParseDetail(in, DefaultWidth)
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, got, want)
}

func TestParseDetailEmpty(t *testing.T) {
	for _, in := range []string{
		"", "\n", "\r\n\r\n", "   \n",
		"Flags: X - disabled; D - dynamic\r\n",
		"Flags: X - disabled; D - dynamic;\r\n  B - blocked\r\n\r\n",
		"\x1b[mFlags: X - disabled\x1b[m\n",
	} {
		got, err := ParseDetail(in, DefaultWidth)
		if err != nil || len(got) != 0 {
			t.Errorf("ParseDetail(%q) = %v, %v; want no entries, no error", in, got, err)
		}
	}
}

func TestParseDetailErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"unterminated quote at end", " 0  type=file slot=\"pvc-te", ErrTruncated},
		{"unterminated quote over lines", " 0  type=file model=\"/storage-pool/k8s/a\n               bc", ErrTruncated},
		{"quote open then next item", " 0  slot=\"abc\n 1  slot=\"d\"\n", ErrMalformed},
		{"quote open then blank", " 0  slot=\"abc\n\n", ErrMalformed},
		{"index only at end", " 0", ErrTruncated},
		{"flags only at end", " 0 X ", ErrTruncated},
		{"index only then next", " 0\n 1  slot=\"d\"\n", ErrMalformed},
		{"error text", "bad command name detail (line 1 column 12)\n", ErrMalformed},
		{"failure text", " 0  slot=a\nfailure: no such item\n", ErrMalformed},
		{"continuation before item", "               file-size=1.0GiB\n", ErrMalformed},
		{"continuation after blank", " 0  slot=a\n\n     size=1\n", ErrMalformed},
		{"body not key=value", " 0  Garbage here\n", ErrMalformed},
		{"bare word", " 0  slot\n", ErrMalformed},
		{"text after quote", " 0  slot=\"a\"b size=1\n", ErrMalformed},
		{"table header", "#  SLOT  TYPE\n0  a     file\n", ErrMalformed},
		{"upper-case key", " 0  Slot=a\n", ErrMalformed},
		{"huge index", " 12345678901  slot=a\n", ErrMalformed},
		{"legend then garbage", "Flags: X - disabled\n  a=b c\n", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDetail(tc.in, DefaultWidth)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseDetail(%q) = %+v, %v; want %v", tc.in, got, err, tc.want)
			}
			if got != nil {
				t.Errorf("entries returned with an error: %+v", got)
			}
			if !strings.HasPrefix(err.Error(), "routeros: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

// TestParseDetailDigitContinuation: a continuation line that starts with
// digits (the rest of a digit-grouped number the device broke at one of
// its spaces) is not a new item, because it is indented past the index
// column, and it joins with the space the break replaced.
func TestParseDetailDigitContinuation(t *testing.T) {
	in := " 0  name=\"very-long-name-that-takes-room\" comment=\"x\" size=53 687\n" +
		"               091 200 free=1\n" +
		" 1  name=b\n"
	got, err := ParseDetail(in, DefaultWidth)
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, got, []wantEntry{
		{0, "", kv{{"name", "very-long-name-that-takes-room"}, {"comment", "x"}, {"size", "53 687 091 200"}, {"free", "1"}}},
		{1, "", kv{{"name", "b"}}},
	})
}

// wrappedAtSpaces is print detail at width 40 as the device wraps it:
// a line breaks at the last space before the width, inside digit groups
// too (size=53 | 687 091 200, size=1 | 073 741 824) and inside a quoted
// value (comment="made by a test | of the wrapping"); the path and the
// NQN hold no space before the width and are cut at it, so those lines
// fill all 40 columns (rdsclient/docs/device.md, "Wrapping").
const wrappedAtSpaces = "Flags: X - disabled; B - blocked\r\n" +
	" 0  type=file slot=\"pvc-test-123\"\r\n" +
	"               slot-default=\"\" size=53\r\n" +
	"               687 091 200\r\n" +
	"               comment=\"made by a test\r\n" +
	"               of the wrapping\"\r\n" +
	"               file-path=/storage-pool/k\r\n" +
	"               8s/pvc-test-123.img\r\n" +
	"               file-size=50.0GiB\r\n" +
	"               nvme-tcp-server-nqn=\"nqn.\r\n" +
	"               2000-02.com.mikrotik:pvc-\r\n" +
	"               test-123\"\r\n" +
	"\r\n" +
	" 1  slot=storage-pool type=partition\r\n" +
	"               mount-point=storage-pool\r\n" +
	"               size=7 949 127 950 336\r\n" +
	"               free=5 963 595 964 416\r\n" +
	"               use=25%\r\n" +
	"\r\n" +
	" 2  name=storage-pool/k8s/x.img\r\n" +
	"               type=.img file size=1\r\n" +
	"               073 741 824\r\n"

func TestParseDetailWrappedAtSpaces(t *testing.T) {
	want := []wantEntry{
		{0, "", kv{{"type", "file"}, {"slot", "pvc-test-123"}, {"slot-default", ""}, {"size", "53 687 091 200"},
			{"comment", "made by a test of the wrapping"}, {"file-path", "/storage-pool/k8s/pvc-test-123.img"},
			{"file-size", "50.0GiB"}, {"nvme-tcp-server-nqn", "nqn.2000-02.com.mikrotik:pvc-test-123"}}},
		{1, "", kv{{"slot", "storage-pool"}, {"type", "partition"}, {"mount-point", "storage-pool"},
			{"size", "7 949 127 950 336"}, {"free", "5 963 595 964 416"}, {"use", "25%"}}},
		{2, "", kv{{"name", "storage-pool/k8s/x.img"}, {"type", ".img file"}, {"size", "1 073 741 824"}}},
	}
	for _, l := range strings.Split(wrappedAtSpaces, "\r\n") {
		if len(l) > 40 {
			t.Fatalf("sample line wider than 40: %q", l)
		}
	}
	for name, in := range variants(wrappedAtSpaces) {
		t.Run(name, func(t *testing.T) {
			got, err := ParseDetail(in, 40)
			if err != nil {
				t.Fatal(err)
			}
			checkEntries(t, got, want)
			size, _ := got[0].Get("size")
			if n, err := ParseNumber(size); err != nil || n != 50<<30 {
				t.Errorf("size %q = %d, %v", size, n, err)
			}
		})
	}
	// Read at a width it was not printed at, the cut lines are short,
	// so they read as breaks at a space: the width is what tells the two
	// apart.
	got, err := ParseDetail(wrappedAtSpaces, 80)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := got[0].Get("file-path"); p != "/storage-pool/k 8s/pvc-test-123.img" {
		t.Errorf("file-path read at width 80 = %q, want the cut read as a break", p)
	}
}

// TestParseDetailFullLineThenProperty: a property that ends exactly at
// the width, followed by a line that starts with the next property, is
// not a cut: the two are joined with a space.
func TestParseDetailFullLineThenProperty(t *testing.T) {
	in := " 0  slot=\"pvc-1\" file-path=/p/k8s/ab.img\r\n" + // 40 columns
		"               file-size=1.0GiB\r\n"
	got, err := ParseDetail(in, 40)
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, got, []wantEntry{{0, "", kv{{"slot", "pvc-1"}, {"file-path", "/p/k8s/ab.img"}, {"file-size", "1.0GiB"}}}})
}

func TestConsoleWidth(t *testing.T) {
	for login, want := range map[string]int{
		"admin": DefaultWidth, "admin+ct": DefaultWidth, "admin+ct200w": 200, "admin+c250w": 250,
		"admin+250wct": 250, "admin+c40w20h": 40, "admin+0w": DefaultWidth, "admin+12": DefaultWidth,
		"admin+w": DefaultWidth, "admin+c/w": DefaultWidth, "admin+99999999999w": DefaultWidth,
	} {
		if got := ConsoleWidth(login); got != want {
			t.Errorf("ConsoleWidth(%q) = %d, want %d", login, got, want)
		}
	}
}

func TestParseTerse(t *testing.T) {
	in := "Flags: X - disabled\r\n" +
		" 0   type=file slot=pvc-test-1 size=53 687 091 200 file-path=/storage-pool/test1.img file-size=50.0GiB nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-test-1\"\r\n" +
		" 1 X type=.img file slot=\"\" size=10.0GiB\r\n" +
		"\r\n" +
		"12 X D type=partition slot=storage-pool mount-point=storage-pool free=5 963 595 964 416\r\n"
	got, err := ParseTerse(in)
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, got, []wantEntry{
		{0, "", kv{{"type", "file"}, {"slot", "pvc-test-1"}, {"size", "53 687 091 200"},
			{"file-path", "/storage-pool/test1.img"}, {"file-size", "50.0GiB"},
			{"nvme-tcp-server-nqn", "nqn.2000-02.com.mikrotik:pvc-test-1"}}},
		{1, "X", kv{{"type", ".img file"}, {"slot", ""}, {"size", "10.0GiB"}}},
		{12, "XD", kv{{"type", "partition"}, {"slot", "storage-pool"}, {"mount-point", "storage-pool"}, {"free", "5 963 595 964 416"}}},
	})
	for _, in := range []string{"", "Flags: X - disabled\n", "\r\n"} {
		if got, err := ParseTerse(in); err != nil || len(got) != 0 {
			t.Errorf("ParseTerse(%q) = %v, %v", in, got, err)
		}
	}
	for _, tc := range []struct {
		in   string
		want error
	}{
		{" 0 slot=\"abc", ErrTruncated},
		{" 0 slot=\"abc\n 1 slot=b\n", ErrMalformed},
		{" 0 slot=a\n     size=1\n", ErrMalformed},
		{"syntax error (line 1 column 5)\n", ErrMalformed},
		{" 0\n", ErrTruncated},
		{" 0 =x\n", ErrMalformed},
	} {
		if got, err := ParseTerse(tc.in); !errors.Is(err, tc.want) || got != nil {
			t.Errorf("ParseTerse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseKV(t *testing.T) {
	kvVariants := variants(readSample(t, "monitor_traffic.txt"))
	delete(kvVariants, "legend+crlf") // a flags legend is no part of key: value output
	for name, in := range kvVariants {
		t.Run("monitor-traffic/"+name, func(t *testing.T) {
			got, err := ParseKV(in)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{
				"slot": "storage-pool", "read-ops": "243 401", "read-ops-per-second": "0",
				"read-bytes": "33 131 503 616", "read-rate": "0bps", "read-time": "0ms",
				"write-ops": "17 667 231", "write-ops-per-second": "76", "write-bytes": "515 659 673 600",
				"write-rate": "12.8Mbps", "write-time": "0ms", "in-flight-ops": "0",
				"active-time": "0ms", "wait-time": "0ms",
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %q\nwant %q", got, want)
			}
		})
	}
	// §3.10 outputs.
	for _, tc := range []struct {
		in   string
		want map[string]string
	}{
		{"  name: rds\r\n", map[string]string{"name": "rds"}},
		{"                   uptime: 15d2h45m30s\r\n                  version: 7.16 (stable)\r\n" +
			"               build-time: 2024-11-08 13:41:55\r\n                 cpu-load: 3%\r\n            board-name: \r\n",
			map[string]string{"uptime": "15d2h45m30s", "version": "7.16 (stable)", "build-time": "2024-11-08 13:41:55", "cpu-load": "3%", "board-name": ""}},
		{"", map[string]string{}},
	} {
		got, err := ParseKV(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseKV(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"name rds\n", ":x\n", "Name: rds\n", "name:rds\n", "bad command name print (line 1 column 18)\n",
		" 0  slot=a\n", "name: rds\n   continued\n",
	} {
		if got, err := ParseKV(in); !errors.Is(err, ErrMalformed) || got != nil {
			t.Errorf("ParseKV(%q) = %v, %v; want ErrMalformed", in, got, err)
		}
	}
}

func TestCleanANSI(t *testing.T) {
	for in, want := range map[string]string{
		"a\x1b[1;31mb\x1b[0mc\r\n":   "abc\n",
		"\x1b]0;title\x07x":          "x",
		"\x1b]0;title\x1b\\y":        "y",
		"\x1b7z\x1b8":                "z",
		"\x1b[":                      "",
		"\x1b":                       "",
		"plain":                      "plain",
		"\x1b[?25l\x1b[Kline\x1b[2J": "line",
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}
