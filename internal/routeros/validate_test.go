package routeros

import (
	"errors"
	"strings"
	"testing"
)

func TestValidatorsAccept(t *testing.T) {
	long := func(n int, c string) string { return strings.Repeat(c, n) }
	for _, tc := range []struct {
		name string
		fn   func(string) error
		ok   []string
	}{
		{"slot", ValidSlot, []string{"pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f", "a", "0", "snap-1", "a-", long(63, "a")}},
		{"path", ValidPath, []string{"/storage-pool/k8s/pvc-x.img", "/a", "/Pool_1/dir/file.IMG", "/a/.hidden", "/a/b..c", "/" + long(254, "a")}},
		{"filename", ValidFileName, []string{"storage-pool/k8s/pvc-x.img", "a", "a/b/c", long(255, "a")}},
		{"nqn", ValidNQN, []string{"nqn.2000-02.com.mikrotik:pvc-test-123", "nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3ccabcd",
			"nqn.2000-02.com.mikrotik:a_b.c", "nqn.2000-02.com.mikrotik:" + long(223-len("nqn.2000-02.com.mikrotik:"), "a")}},
		{"pool", ValidPool, []string{"storage-pool", "Pool_1", "a.b", "0", long(63, "a")}},
	} {
		for _, v := range tc.ok {
			if err := tc.fn(v); err != nil {
				t.Errorf("%s(%q) = %v, want nil", tc.name, v, err)
			}
		}
	}
	for _, p := range []int{1, 22, 4420, 65535} {
		if err := ValidPort(p); err != nil {
			t.Errorf("ValidPort(%d) = %v", p, err)
		}
	}
	for _, p := range []int{0, -1, 65536, 1 << 40} {
		if err := ValidPort(p); !errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), "port") {
			t.Errorf("ValidPort(%d) = %v, want ErrInvalidValue naming the port", p, err)
		}
	}
}

// hostile are values that must never reach the console through any
// validator: each is checked against every validator. Rejections that
// depend on the kind (leading dash, upper case) are in
// TestValidatorsRejectPerKind.
var hostile = []string{
	"", " ", "\t", "\n", "\r", "\x00", "pvc-1;", "pvc-1;/system reboot", `pvc"1`, `"`, "$x", "pvc-$(id)",
	"[find]", "pvc-[x", "pvc-]x", "pvc-`id`", "`", "{", "}", "pvc-{a}", "?", "pvc?", `\`, `pvc\n`,
	"pvc 1", "pvc\t1", "pvc\n1", "pvc\x00", "pvc\x1b[31m", "pvc\x7f", "..", "../etc", "/../etc",
	"/a/../b", "/a/./b", ".", "/.", "/a/..", "a/../b", "//a", "/a//b", "/a/", "a/", "/", "/-\n",
	"pvc-\u0430", "\u0440vc-1", "ｐｖｃ-1", "pvc\u00a0x", "pvc\u200bx", "pvc-é", "\xff\xfe",
	strings.Repeat("a", 300), "/" + strings.Repeat("a", 300), "pvc,1", "pvc'1", "pvc|x", "pvc&x",
	"pvc>x", "pvc<x", "pvc*x", "pvc#x", "pvc%x", "pvc!x", "pvc=x", "pvc@x", "pvc:x:" + "\n", "a=b c=d",
}

func TestValidatorsRejectHostile(t *testing.T) {
	if len(hostile) < 50 {
		t.Fatalf("only %d hostile values", len(hostile))
	}
	validators := map[string]func(string) error{
		"slot": ValidSlot, "path": ValidPath, "filename": ValidFileName, "nqn": ValidNQN, "pool": ValidPool,
	}
	for name, fn := range validators {
		for _, v := range hostile {
			err := fn(v)
			if err == nil {
				t.Errorf("%s(%q) accepted a hostile value", name, v)
				continue
			}
			if !errors.Is(err, ErrInvalidValue) {
				t.Errorf("%s(%q) error %v does not wrap ErrInvalidValue", name, v, err)
			}
			if !strings.HasPrefix(err.Error(), "routeros: invalid value: ") {
				t.Errorf("%s(%q) error %q has the wrong prefix", name, v, err)
			}
		}
	}
}

func TestValidatorsRejectPerKind(t *testing.T) {
	for _, tc := range []struct {
		name, kind string
		fn         func(string) error
		bad        []string
	}{
		{"slot", "slot", ValidSlot, []string{"-pvc", "PVC-1", "pvc_1", "pvc.1", "pvc/1", strings.Repeat("a", 64), "pvc-A"}},
		{"path", "file path", ValidPath, []string{"storage-pool/x.img", "/a b", "/a/b/", strings.Repeat("/a", 128), "/a/.", "/~x"}},
		{"filename", "file name", ValidFileName, []string{"/storage-pool/x.img", "a/", strings.Repeat("a", 256), "./a", "a/..", "a+b"}},
		{"nqn", "nqn", ValidNQN, []string{"NQN.2000-02.com.mikrotik:x", "nqn.2000-02.com.mikrotik:PVC", "nqn.200-02.com:x",
			"nqn.2000-2.com:x", "nqn.2000-02.com", "nqn.2000-02.:x", "nqn.2000-02.com:", "nqn.2000-02.com_x:y", "nqn.2000-02x.com:y",
			"nqn.2000-02.com.mikrotik:" + strings.Repeat("a", 199), "nqn.abcd-02.com:x", "iqn.2000-02.com:x"}},
		{"pool", "pool", ValidPool, []string{"-pool", ".pool", "_pool", "pool/x", strings.Repeat("a", 64)}},
	} {
		for _, v := range tc.bad {
			err := tc.fn(v)
			if !errors.Is(err, ErrInvalidValue) {
				t.Errorf("%s(%q) = %v, want ErrInvalidValue", tc.name, v, err)
				continue
			}
			if !strings.Contains(err.Error(), tc.kind+" ") {
				t.Errorf("%s(%q) error %q does not name the kind %q", tc.name, v, err, tc.kind)
			}
		}
	}
}

func TestValidatorErrorQuotesAndClips(t *testing.T) {
	err := ValidSlot("bad\"slot\n")
	if err == nil || !strings.Contains(err.Error(), `"bad\"slot\n"`) {
		t.Errorf("error %v does not quote the value with %%q", err)
	}
	err = ValidSlot(strings.Repeat("x", 10000))
	if err == nil || len(err.Error()) > 300 {
		t.Errorf("error for a huge value is %d bytes", len(err.Error()))
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":                               `""`,
		"pvc-1":                          `"pvc-1"`,
		"storage-pool/k8s/pvc-x.img":     `"storage-pool/k8s/pvc-x.img"`,
		"nqn.2000-02.com.mikrotik:pvc-1": `"nqn.2000-02.com.mikrotik:pvc-1"`,
		"^pvc-":                          `"^pvc-"`,
		"a~b+c_D":                        `"a~b+c_D"`,
	} {
		if got, err := Quote(in); err != nil || got != want {
			t.Errorf("Quote(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, v := range hostile {
		if v == "" || (strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._:^~+-") == "") {
			continue // harmless inside quotes (e.g. "..", "/a//b"); the validators reject them
		}
		if got, err := Quote(v); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("Quote(%q) = %q, %v; want ErrInvalidValue", v, got, err)
		}
	}
	for _, v := range []string{`a"b`, `a\b`, "a$b", "a[b", "a]b", "a{b", "a}b", "a;b", "a?b", "a`b", "a b", "a\tb", "a\nb", "a\x00b", "a\u0430", "a=b", "a'b", "a,b"} {
		if got, err := Quote(v); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("Quote(%q) = %q, %v; want ErrInvalidValue", v, got, err)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for in, want := range map[int64]string{
		1 << 20: "1M", 1 << 30: "1G", 50 << 30: "50G", 1536 << 20: "1536M", 3 << 40: "3072G", 1025 << 20: "1025M",
	} {
		if got, err := FormatSize(in); err != nil || got != want {
			t.Errorf("FormatSize(%d) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []int64{0, -1 << 20, 1, 1<<20 + 1, 1<<30 - 1, 512} {
		if got, err := FormatSize(in); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("FormatSize(%d) = %q, %v; want ErrInvalidValue", in, got, err)
		}
	}
}

func TestPoolOf(t *testing.T) {
	if p, err := PoolOf("/storage-pool/k8s/x.img"); err != nil || p != "storage-pool" {
		t.Errorf("PoolOf = %q, %v", p, err)
	}
	for _, in := range []string{"storage-pool/x", "/-x/y", "/a/../b", ""} {
		if _, err := PoolOf(in); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("PoolOf(%q) err = %v", in, err)
		}
	}
}
