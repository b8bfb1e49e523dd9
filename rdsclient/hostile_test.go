package rdsclient_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/srvlab/rds-csi/rdsclient"
)

// hostile values. okAs lists the argument kinds for which a value is
// legitimately valid (pool names may contain upper case and '_', like
// RouterOS mount points); for every other kind it must be refused.
var hostile = []struct {
	v    string
	okAs string
}{
	{v: ""},
	{v: " "},
	{v: "pvc 1"},
	{v: " pvc-1"},
	{v: "pvc-1 "},
	{v: ";"},
	{v: "pvc-1;/system reboot"},
	{v: `"`},
	{v: `pvc-1"`},
	{v: `pvc-1" slot="x`},
	{v: "$"},
	{v: "$x"},
	{v: "pvc-$(id)"},
	{v: "["},
	{v: "]"},
	{v: "[/system reboot]"},
	{v: "pvc-[find]"},
	{v: "`"},
	{v: "pvc-`id`"},
	{v: "\n"},
	{v: "pvc-1\n/system reboot"},
	{v: "\x00"},
	{v: "pvc-1\x00"},
	{v: ".."},
	{v: "."},
	{v: "../etc/passwd"},
	{v: "/../"},
	{v: "a/../b"},
	{v: "a/./b"},
	{v: "{"},
	{v: "}"},
	{v: "{:put 1}"},
	{v: "?"},
	{v: "pvc-1?"},
	{v: `\`},
	{v: `pvc-1\n`},
	{v: "\t"},
	{v: "pvc\t1"},
	{v: "\r"},
	{v: "pvc-1\r"},
	{v: "PVC-1", okAs: "pool dir"},
	{v: "Pvc", okAs: "pool dir"},
	{v: "pvc_1", okAs: "pool dir"},
	{v: "-pvc"},
	{v: "ｐｖｃ-1"},       // full-width letters
	{v: "pvс-1"},       // Cyrillic es
	{v: "pvc‐1"},       // U+2010 hyphen
	{v: "pvc\u200b-1"}, // zero-width space
	{v: "pvc\u00a0-1"}, // no-break space
	{v: "pvc-1\u202e"}, // right-to-left override
	{v: strings.Repeat("a", 300)},
	{v: strings.Repeat("a", 64)},
	{v: "pvc'1"},
	{v: "pvc|1"},
	{v: "pvc&1"},
	{v: "pvc>1"},
	{v: "pvc<1"},
	{v: "pvc=1"},
	{v: "pvc,1"},
	{v: "pvc#1"},
	{v: "pvc%1"},
	{v: "pvc*1"},
	{v: "pvc!1"},
	{v: "pvc@1"},
	{v: "pvc(1)"},
	{v: "pvc+1"},
	{v: "pvc~1"},
	{v: "^pvc"},
	{v: "pvc\x7f"},
	{v: "\xff\xfe"},
	{v: "pvc\x1b[31m"},
}

// unsafeInPath reports whether v stays invalid when embedded in a
// longer path or name: it contains a byte no path component may hold,
// or a "." / ".." component, or makes the whole too long.
func unsafeInPath(v string) bool {
	if len(v) > 200 || v == "." || v == ".." || strings.Contains(v, "/") {
		return true
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return true
		}
	}
	return false
}

// unsafeInNQN reports whether v stays invalid after "nqn.2000-02.com.mikrotik:".
func unsafeInNQN(v string) bool {
	if len(v) > 200 {
		return true
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return true
		}
	}
	return false
}

func TestHostileInputNeverSent(t *testing.T) {
	if len(hostile) < 50 {
		t.Fatalf("only %d hostile values", len(hostile))
	}
	srv := newServer(t)
	c := dial(t, srv)
	ctx := context.Background()
	src, err := c.CreateDisk(testCtx(t), spec("pvc-src", gib))
	if err != nil {
		t.Fatal(err)
	}
	srv.ResetCommands()

	good := spec("pvc-good", gib)
	calls := 0
	checkAs := func(want error, what string, v string, err error) {
		t.Helper()
		calls++
		if !errors.Is(err, want) {
			t.Errorf("%s(%q) = %v, want %v", what, v, err, want)
		}
		if cmds := srv.Commands(); len(cmds) != 0 {
			t.Fatalf("%s(%q) sent %q", what, v, cmds)
		}
	}
	check := func(what string, v string, err error) {
		t.Helper()
		checkAs(rdsclient.ErrInvalid, what, v, err)
	}
	// withSlot is the source disk as if read with slot v: a Disk is a
	// plain value, so a caller may hand in anything.
	withSlot := func(v string) rdsclient.Disk {
		d := src
		d.Slot = v
		return d
	}
	for _, h := range hostile {
		v := h.v
		// Slots and source slots.
		_, err := c.Disk(ctx, v)
		check("Disk", v, err)
		check("DeleteDisk", v, c.DeleteDisk(ctx, withSlot(v)))
		_, err = c.ResizeDisk(ctx, withSlot(v), 2*gib)
		check("ResizeDisk", v, err)
		_, err = c.DiskStats(ctx, v)
		check("DiskStats", v, err)
		s := good
		s.Slot = v
		_, err = c.CreateDisk(ctx, s)
		check("CreateDisk.Slot", v, err)
		_, err = c.CopyDisk(ctx, src, s)
		check("CopyDisk.Slot", v, err)
		_, err = c.CopyDisk(ctx, withSlot(v), good)
		check("CopyDisk.source", v, err)
		// Slot prefix.
		_, err = c.Disks(ctx, v)
		check("Disks", v, err)

		// File paths, as given and embedded as a file name and as the
		// pool component.
		paths := []string{v}
		if unsafeInPath(v) {
			paths = append(paths, "/storage-pool/k8s/"+v+"/x.img", "/"+v+"/k8s/x.img", "/storage-pool/"+v)
		}
		for _, p := range paths {
			s := good
			s.FilePath = p
			_, err = c.CreateDisk(ctx, s)
			check("CreateDisk.FilePath", p, err)
			_, err = c.CopyDisk(ctx, src, s)
			check("CopyDisk.FilePath", p, err)
			check("RemoveFile", p, c.RemoveFile(ctx, p))
			// A Disk whose path is not one this client would write is
			// unexpected device output: nothing is removed.
			if p != "" {
				d := src
				d.FilePath = p
				checkAs(rdsclient.ErrUnexpectedOutput, "DeleteDisk.FilePath", p, c.DeleteDisk(ctx, d))
			}
		}

		// NQN, as given and embedded after the usual prefix.
		nqns := []string{v}
		if unsafeInNQN(v) {
			nqns = append(nqns, "nqn.2000-02.com.mikrotik:"+v)
		}
		for _, n := range nqns {
			s := good
			s.Export = &rdsclient.NVMeExport{Port: 4420, NQN: n}
			_, err = c.CreateDisk(ctx, s)
			check("CreateDisk.NQN", n, err)
			_, err = c.CopyDisk(ctx, src, s)
			check("CopyDisk.NQN", n, err)
		}

		// Pool and directory prefix.
		if !strings.Contains(h.okAs, "pool") {
			_, err = c.Capacity(ctx, v)
			check("Capacity", v, err)
		}
		dirs := []string{}
		if !strings.Contains(h.okAs, "dir") {
			dirs = append(dirs, v)
		}
		if unsafeInPath(v) {
			dirs = append(dirs, "storage-pool/"+v, "/storage-pool/"+v+"/k8s")
		}
		for _, d := range dirs {
			_, err = c.Files(ctx, d)
			check("Files", d, err)
		}
	}

	// Ports and sizes.
	for _, port := range []int{-1, -4420, 65536, 1 << 20, 1<<31 - 1, -(1 << 31)} {
		s := good
		s.Export = &rdsclient.NVMeExport{Port: port, NQN: good.Export.NQN}
		_, err := c.CreateDisk(ctx, s)
		check("CreateDisk.Port", fmt.Sprint(port), err)
		_, err = c.CopyDisk(ctx, src, s)
		check("CopyDisk.Port", fmt.Sprint(port), err)
	}
	for _, size := range []int64{0, -1, -gib, rdsclient.MaxDiskSize + 1, 1<<63 - 1} {
		s := good
		s.SizeBytes = size
		_, err := c.CreateDisk(ctx, s)
		check("CreateDisk.SizeBytes", fmt.Sprint(size), err)
		_, err = c.ResizeDisk(ctx, src, size)
		check("ResizeDisk.size", fmt.Sprint(size), err)
	}
	for _, p := range []string{"/storage-pool", "/storage-pool/", "storage-pool", "/"} {
		check("RemoveFile", p, c.RemoveFile(ctx, p))
		s := good
		s.FilePath = p
		_, err := c.CreateDisk(ctx, s)
		check("CreateDisk.FilePath", p, err)
		d := src
		d.FilePath = p
		checkAs(rdsclient.ErrUnexpectedOutput, "DeleteDisk.FilePath", p, c.DeleteDisk(ctx, d))
	}
	t.Logf("%d hostile calls refused", calls)
}
