package powercut_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/internal/durable"
	"github.com/srvlab/rds-csi/internal/powercut"
	"golang.org/x/sys/unix"
)

// setup makes a backing directory holding files (name to content; a
// name ending in "/" is a directory) and mounts it.
func setup(t *testing.T, files map[string]string, opts ...powercut.Option) (p *powercut.FS, backing, mnt string) {
	t.Helper()
	powercut.Require(t)
	backing, mnt = t.TempDir(), t.TempDir()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		path := filepath.Join(backing, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(files[name]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, err := powercut.Mount(backing, mnt, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Unmount(); err != nil && !errors.Is(err, powercut.ErrUnmounted) {
			t.Errorf("cleanup: %v", err)
		}
	})
	return p, backing, mnt
}

func cut(t *testing.T, p *powercut.FS) {
	t.Helper()
	if err := p.Cut(); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, data string, off int64, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(data), off); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

func syncPath(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// wantFile checks that path holds content.
func wantFile(t *testing.T, path, content string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s: %v, want content %q", path, err, content)
		return
	}
	if string(got) != content {
		t.Errorf("%s = %q (%d bytes), want %q (%d bytes)", path, abbrev(got), len(got), abbrev([]byte(content)), len(content))
	}
}

func abbrev(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

func wantMissing(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: %v, want it not to exist", path, err)
	}
}

// tree lists everything under dir: type, permissions, size, content or
// link target.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v", rel, fi.Mode())
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %d %x", fi.Size(), sha256.Sum256(data))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " -> %s", target)
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestUnsyncedDataIsLost(t *testing.T) {
	p, backing, mnt := setup(t, map[string]string{
		"unsynced":   "the synced content",
		"synced":     "the synced content",
		"two-fsyncs": "version 1",
	})
	writeAt(t, filepath.Join(mnt, "unsynced"), "SYNCED", 4, false)
	writeAt(t, filepath.Join(mnt, "unsynced"), "the overwrite, then more than before", 0, false)
	writeAt(t, filepath.Join(mnt, "synced"), "SYNCED", 4, true)
	writeAt(t, filepath.Join(mnt, "two-fsyncs"), "version 2", 0, true)
	writeAt(t, filepath.Join(mnt, "two-fsyncs"), "version 3, longer", 0, false)
	wantFile(t, filepath.Join(mnt, "unsynced"), "the overwrite, then more than before")
	if files, dirs := p.Pending(); files != 2 || dirs != 0 {
		t.Errorf("Pending() = %d files, %d dirs; want 2, 0", files, dirs)
	}
	cut(t, p)
	wantFile(t, filepath.Join(backing, "unsynced"), "the synced content")
	wantFile(t, filepath.Join(backing, "synced"), "the SYNCED content")
	wantFile(t, filepath.Join(backing, "two-fsyncs"), "version 2")
}

func TestFsyncOnAnyHandleSyncsTheFile(t *testing.T) {
	p, backing, mnt := setup(t, map[string]string{"a": "old", "b/c": "old"})
	// Written through one handle, synced through a read-only one.
	writeAt(t, filepath.Join(mnt, "a"), "new", 0, false)
	syncPath(t, filepath.Join(mnt, "a"))
	// Synced under another name: data belongs to the inode.
	if err := os.Link(filepath.Join(mnt, "b/c"), filepath.Join(mnt, "b/d")); err != nil {
		t.Fatal(err)
	}
	syncPath(t, filepath.Join(mnt, "b"))
	writeAt(t, filepath.Join(mnt, "b/c"), "NEW", 0, false)
	syncPath(t, filepath.Join(mnt, "b/d"))
	cut(t, p)
	wantFile(t, filepath.Join(backing, "a"), "new")
	wantFile(t, filepath.Join(backing, "b/c"), "NEW")
	wantFile(t, filepath.Join(backing, "b/d"), "NEW")
}

func TestCreateNeedsDirectorySync(t *testing.T) {
	for _, syncDir := range []bool{false, true} {
		t.Run(fmt.Sprintf("syncDir=%v", syncDir), func(t *testing.T) {
			p, backing, mnt := setup(t, map[string]string{"d/": ""})
			// Data fsynced, but the name is in an unsynced directory.
			writeAt(t, filepath.Join(mnt, "d/file"), "data", 0, true)
			if err := os.Mkdir(filepath.Join(mnt, "d/sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			writeAt(t, filepath.Join(mnt, "d/sub/inner"), "inner", 0, true)
			syncPath(t, filepath.Join(mnt, "d/sub"))
			if err := os.Symlink("file", filepath.Join(mnt, "d/link")); err != nil {
				t.Fatal(err)
			}
			if syncDir {
				syncPath(t, filepath.Join(mnt, "d"))
			}
			cut(t, p)
			if syncDir {
				wantFile(t, filepath.Join(backing, "d/file"), "data")
				wantFile(t, filepath.Join(backing, "d/sub/inner"), "inner")
				if target, err := os.Readlink(filepath.Join(backing, "d/link")); err != nil || target != "file" {
					t.Errorf("d/link -> %q, %v; want file", target, err)
				}
			} else {
				// Whatever was synced inside, sub goes with its name.
				for _, name := range []string{"d/file", "d/sub", "d/link"} {
					wantMissing(t, filepath.Join(backing, name))
				}
			}
		})
	}
}

func TestRenameIsAllOrNothing(t *testing.T) {
	files := map[string]string{"old": "old content", "victim": "victim content", "x/": "", "y/": ""}
	t.Run("unsynced", func(t *testing.T) {
		p, backing, mnt := setup(t, files)
		if err := os.Rename(filepath.Join(mnt, "old"), filepath.Join(mnt, "new")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(mnt, "new"), filepath.Join(mnt, "victim")); err != nil {
			t.Fatal(err)
		}
		cut(t, p)
		wantFile(t, filepath.Join(backing, "old"), "old content")
		wantMissing(t, filepath.Join(backing, "new"))
		wantFile(t, filepath.Join(backing, "victim"), "victim content")
	})
	t.Run("synced", func(t *testing.T) {
		p, backing, mnt := setup(t, files)
		if err := os.Rename(filepath.Join(mnt, "old"), filepath.Join(mnt, "new")); err != nil {
			t.Fatal(err)
		}
		syncPath(t, mnt)
		cut(t, p)
		wantMissing(t, filepath.Join(backing, "old"))
		wantFile(t, filepath.Join(backing, "new"), "old content")
		wantFile(t, filepath.Join(backing, "victim"), "victim content")
	})
	t.Run("across directories, one synced", func(t *testing.T) {
		for _, synced := range []string{"x", "y"} {
			p, backing, mnt := setup(t, map[string]string{"x/f": "f", "y/": ""})
			if err := os.Rename(filepath.Join(mnt, "x/f"), filepath.Join(mnt, "y/g")); err != nil {
				t.Fatal(err)
			}
			syncPath(t, filepath.Join(mnt, synced))
			cut(t, p)
			wantFile(t, filepath.Join(backing, "x/f"), "f")
			wantMissing(t, filepath.Join(backing, "y/g"))
		}
	})
	t.Run("across directories, both synced", func(t *testing.T) {
		p, backing, mnt := setup(t, map[string]string{"x/f": "f", "y/": ""})
		if err := os.Rename(filepath.Join(mnt, "x/f"), filepath.Join(mnt, "y/g")); err != nil {
			t.Fatal(err)
		}
		syncPath(t, filepath.Join(mnt, "y"))
		syncPath(t, filepath.Join(mnt, "x"))
		cut(t, p)
		wantMissing(t, filepath.Join(backing, "x/f"))
		wantFile(t, filepath.Join(backing, "y/g"), "f")
	})
	t.Run("directory onto empty directory", func(t *testing.T) {
		p, backing, mnt := setup(t, map[string]string{"a/f": "f", "b/": ""})
		// os.Rename refuses to replace a directory.
		if err := unix.Rename(filepath.Join(mnt, "a"), filepath.Join(mnt, "b")); err != nil {
			t.Fatal(err)
		}
		wantFile(t, filepath.Join(mnt, "b/f"), "f")
		cut(t, p)
		wantFile(t, filepath.Join(backing, "a/f"), "f")
		if ents, err := os.ReadDir(filepath.Join(backing, "b")); err != nil || len(ents) != 0 {
			t.Errorf("b: %v, %v; want an empty directory", ents, err)
		}
	})
	t.Run("exchange", func(t *testing.T) {
		p, backing, mnt := setup(t, map[string]string{"a": "a", "b": "b"})
		if err := renameExchange(filepath.Join(mnt, "a"), filepath.Join(mnt, "b")); err != nil {
			t.Fatal(err)
		}
		wantFile(t, filepath.Join(mnt, "a"), "b")
		cut(t, p)
		wantFile(t, filepath.Join(backing, "a"), "a")
		wantFile(t, filepath.Join(backing, "b"), "b")
	})
}

// TestLaterDurableChangeCommitsEarlierOne: a rename waits for both its
// directories, but an unlink of its new name, made durable by a sync of
// that directory, commits it too, as a journal would: the file is gone
// from both names, and Cut does not fail trying to undo the rename.
func TestLaterDurableChangeCommitsEarlierOne(t *testing.T) {
	p, backing, mnt := setup(t, map[string]string{"x/f": "f", "x/keep": "k", "y/": ""})
	if err := os.Rename(filepath.Join(mnt, "x/f"), filepath.Join(mnt, "y/g")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "y/g")); err != nil {
		t.Fatal(err)
	}
	syncPath(t, filepath.Join(mnt, "y"))
	if err := os.Rename(filepath.Join(mnt, "x/keep"), filepath.Join(mnt, "x/kept")); err != nil {
		t.Fatal(err)
	}
	if files, dirs := p.Pending(); files != 0 || dirs != 1 {
		t.Errorf("Pending() = %d files, %d dirs; want 0, 1", files, dirs)
	}
	cut(t, p)
	wantMissing(t, filepath.Join(backing, "x/f"))
	wantMissing(t, filepath.Join(backing, "y/g"))
	wantFile(t, filepath.Join(backing, "x/keep"), "k")
	wantMissing(t, filepath.Join(backing, "x/kept"))
}

func renameExchange(a, b string) error {
	return unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
}

// TestAtomicReplace checks the write-fsync-rename-fsync(dir) pattern, as
// internal/durable implements it, and the same pattern without its final
// directory fsync.
func TestAtomicReplace(t *testing.T) {
	p, backing, mnt := setup(t, map[string]string{"durable": "v1", "careless": "v1"})
	if err := durable.WriteFile(filepath.Join(mnt, "durable"), []byte("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(mnt, "careless.tmp")
	writeAt(t, tmp, "v2", 0, true)
	if err := os.Rename(tmp, filepath.Join(mnt, "careless")); err != nil {
		t.Fatal(err)
	}
	cut(t, p)
	wantFile(t, filepath.Join(backing, "durable"), "v2")
	wantFile(t, filepath.Join(backing, "careless"), "v1")
	wantMissing(t, filepath.Join(backing, "careless.tmp"))
}

func TestUnlinkNeedsDirectorySync(t *testing.T) {
	for _, syncDir := range []bool{false, true} {
		t.Run(fmt.Sprintf("syncDir=%v", syncDir), func(t *testing.T) {
			p, backing, mnt := setup(t, map[string]string{"d/f": "synced", "d/linked": "two names", "d/empty/": ""})
			if err := os.Link(filepath.Join(mnt, "d/linked"), filepath.Join(mnt, "d/other")); err != nil {
				t.Fatal(err)
			}
			syncPath(t, filepath.Join(mnt, "d"))
			// Unsynced data of an unlinked file is lost with it.
			writeAt(t, filepath.Join(mnt, "d/f"), "UNSYNCED", 0, false)
			for _, name := range []string{"d/f", "d/linked"} {
				if err := os.Remove(filepath.Join(mnt, name)); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Remove(filepath.Join(mnt, "d/empty")); err != nil {
				t.Fatal(err)
			}
			// The stash's hard link does not show.
			if fi, err := os.Stat(filepath.Join(mnt, "d/other")); err != nil || fi.Sys().(*syscall.Stat_t).Nlink != 1 {
				t.Errorf("d/other: %v, %v; want one link", fi, err)
			}
			if syncDir {
				syncPath(t, filepath.Join(mnt, "d"))
			}
			cut(t, p)
			if syncDir {
				wantMissing(t, filepath.Join(backing, "d/f"))
				wantMissing(t, filepath.Join(backing, "d/linked"))
				wantMissing(t, filepath.Join(backing, "d/empty"))
			} else {
				wantFile(t, filepath.Join(backing, "d/f"), "synced")
				wantFile(t, filepath.Join(backing, "d/linked"), "two names")
				if fi, err := os.Stat(filepath.Join(backing, "d/empty")); err != nil || !fi.IsDir() {
					t.Errorf("d/empty: %v, %v; want a directory", fi, err)
				}
			}
			wantFile(t, filepath.Join(backing, "d/other"), "two names")
		})
	}
}

func TestUnlinkThenRecreate(t *testing.T) {
	p, backing, mnt := setup(t, map[string]string{"f": "original"})
	if err := os.Remove(filepath.Join(mnt, "f")); err != nil {
		t.Fatal(err)
	}
	writeAt(t, filepath.Join(mnt, "f"), "replacement", 0, true)
	if err := os.Rename(filepath.Join(mnt, "f"), filepath.Join(mnt, "g")); err != nil {
		t.Fatal(err)
	}
	cut(t, p)
	wantFile(t, filepath.Join(backing, "f"), "original")
	wantMissing(t, filepath.Join(backing, "g"))
}

func TestCutWithNothingPendingChangesNothing(t *testing.T) {
	p, backing, mnt := setup(t, map[string]string{
		"a":         "alpha",
		"empty":     "",
		"big":       strings.Repeat("0123456789abcdef", 10000),
		"d/e/f":     "deep",
		"d/g":       "g",
		"emptydir/": "",
	})
	if err := os.Symlink("d/g", filepath.Join(backing, "link")); err != nil {
		t.Fatal(err)
	}
	// The backing directory, but for the stash.
	var lines []string
	for _, line := range strings.SplitAfter(tree(t, backing), "\n") {
		if !strings.HasPrefix(line, ".powercut-stash-") {
			lines = append(lines, line)
		}
	}
	before := strings.Join(lines, "")
	if got := tree(t, mnt); got != before {
		t.Fatalf("through the mount:\n%s\nwant:\n%s", got, before)
	}
	// Changes, all made durable.
	writeAt(t, filepath.Join(mnt, "a"), "ALPHA and more", 0, true)
	writeAt(t, filepath.Join(mnt, "d/new"), "new", 0, true)
	if err := os.Rename(filepath.Join(mnt, "d/g"), filepath.Join(mnt, "d/e/g")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "empty")); err != nil {
		t.Fatal(err)
	}
	syncPath(t, filepath.Join(mnt, "d"))
	syncPath(t, filepath.Join(mnt, "d/e"))
	syncPath(t, mnt)
	if files, dirs := p.Pending(); files != 0 || dirs != 0 {
		t.Fatalf("Pending() = %d, %d; want nothing", files, dirs)
	}
	before = tree(t, mnt)
	if strings.Contains(before, "powercut") {
		t.Errorf("the stash shows through the mount:\n%s", before)
	}
	cut(t, p)
	if after := tree(t, backing); after != before {
		t.Errorf("after the cut:\n%s\nwant:\n%s", after, before)
	}
}

func TestTruncateIsReverted(t *testing.T) {
	content := strings.Repeat("x", 5000)
	p, backing, mnt := setup(t, map[string]string{"shrunk": content, "grown": content, "both": content, "otrunc": content, "synced": content})
	if err := os.Truncate(filepath.Join(mnt, "shrunk"), 100); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(mnt, "grown"), 1<<20); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(mnt, "both"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { return f.Truncate(10) },
		func() error { _, err := f.WriteAt([]byte("written"), 3000); return err },
		func() error { return f.Truncate(9000) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(mnt, "otrunc"), []byte("short"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(mnt, "synced"), 10); err != nil {
		t.Fatal(err)
	}
	syncPath(t, filepath.Join(mnt, "synced"))
	cut(t, p)
	for _, name := range []string{"shrunk", "grown", "both", "otrunc"} {
		wantFile(t, filepath.Join(backing, name), content)
	}
	wantFile(t, filepath.Join(backing, "synced"), content[:10])
}

func TestAppendAndFallocateAreReverted(t *testing.T) {
	content := strings.Repeat("0123456789", 1000)
	p, backing, mnt := setup(t, map[string]string{"appended": content, "punched": content, "zeroed": content, "allocated": content})
	f, err := os.OpenFile(filepath.Join(mnt, "appended"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("appended"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for name, mode := range map[string]uint32{
		"punched":   unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE,
		"zeroed":    unix.FALLOC_FL_ZERO_RANGE,
		"allocated": 0,
	} {
		f, err := os.OpenFile(filepath.Join(mnt, name), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		off, size := int64(4096), int64(4096)
		if mode == 0 {
			off, size = 0, 1<<16
		}
		if err := unix.Fallocate(int(f.Fd()), mode, off, size); err != nil {
			f.Close()
			if errors.Is(err, unix.EOPNOTSUPP) {
				t.Logf("%s: fallocate mode %#x not supported by the backing file system", name, mode)
				continue
			}
			t.Fatal(err)
		}
		f.Close()
		if got, err := os.ReadFile(filepath.Join(mnt, name)); err != nil || string(got) == content {
			t.Errorf("%s: fallocate changed nothing (%v)", name, err)
		}
	}
	cut(t, p)
	for _, name := range []string{"appended", "punched", "zeroed", "allocated"} {
		wantFile(t, filepath.Join(backing, name), content)
	}
}

// TestConcurrentWriters writes and syncs many files at once (for the
// race detector), then cuts: each file has its synced version.
func TestConcurrentWriters(t *testing.T) {
	p, backing, mnt := setup(t, map[string]string{"d/": ""})
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- func() error {
				name := filepath.Join(mnt, "d", fmt.Sprint(i))
				f, err := os.Create(name)
				if err != nil {
					return err
				}
				defer f.Close()
				for v := range 20 {
					if _, err := f.WriteAt([]byte(fmt.Sprintf("file %d version %d\n", i, v)), 0); err != nil {
						return err
					}
					if v == 10 {
						if err := f.Sync(); err != nil {
							return err
						}
					}
				}
				return nil
			}()
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	syncPath(t, filepath.Join(mnt, "d"))
	cut(t, p)
	for i := range n {
		wantFile(t, filepath.Join(backing, "d", fmt.Sprint(i)), fmt.Sprintf("file %d version 10\n", i))
	}
}

func TestTornWrites(t *testing.T) {
	synced := bytes.Repeat([]byte("s"), 4000)
	type write struct {
		off  int64
		data []byte
	}
	writes := []write{
		{0, bytes.Repeat([]byte("A"), 1000)},
		{3000, bytes.Repeat([]byte("B"), 700)},
		{3500, bytes.Repeat([]byte("C"), 2000)}, // overlaps B, extends the file
		{100, bytes.Repeat([]byte("D"), 10)},
	}
	for _, unit := range []int64{512, 4096} {
		// The candidates: the synced content with the writes, split at
		// multiples of unit, applied up to each cut point.
		var candidates [][]byte
		cur := slices.Clone(synced)
		candidates = append(candidates, slices.Clone(cur))
		for _, w := range writes {
			for off, data := w.off, w.data; len(data) > 0; {
				n := min(int64(len(data)), (off/unit+1)*unit-off)
				if end := off + n; end > int64(len(cur)) {
					cur = append(cur, make([]byte, end-int64(len(cur)))...)
				}
				copy(cur[off:], data[:n])
				candidates = append(candidates, slices.Clone(cur))
				off, data = off+n, data[n:]
			}
		}
		seen := map[int]bool{}
		for seed := range uint64(30) {
			p, backing, mnt := setup(t, map[string]string{"f": string(synced)},
				powercut.WithTornWrites(int(unit), rand.New(rand.NewPCG(seed, 1))))
			f, err := os.OpenFile(filepath.Join(mnt, "f"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range writes {
				if _, err := f.WriteAt(w.data, w.off); err != nil {
					t.Fatal(err)
				}
			}
			f.Close()
			cut(t, p)
			got, err := os.ReadFile(filepath.Join(backing, "f"))
			if err != nil {
				t.Fatal(err)
			}
			k := slices.IndexFunc(candidates, func(c []byte) bool { return bytes.Equal(c, got) })
			if k < 0 {
				t.Fatalf("unit %d, seed %d: content (%d bytes) is not the synced content plus a prefix of the writes", unit, seed, len(got))
			}
			seen[k] = true
		}
		t.Logf("unit %d: %d cut points, seen %v", unit, len(candidates), seen)
		if !seen[0] || !seen[len(candidates)-1] || len(seen) < 4 {
			t.Errorf("unit %d: cut points seen over 30 seeds: %v; want none, all and others among 0..%d", unit, seen, len(candidates)-1)
		}
	}
}

func TestTornWritesKeepSyncedWrites(t *testing.T) {
	for seed := range uint64(10) {
		p, backing, mnt := setup(t, map[string]string{"f": "old"}, powercut.WithTornWrites(512, rand.New(rand.NewPCG(seed, 2))))
		writeAt(t, filepath.Join(mnt, "f"), strings.Repeat("n", 2000), 0, true)
		writeAt(t, filepath.Join(mnt, "f"), strings.Repeat("u", 1024), 0, false)
		cut(t, p)
		got, err := os.ReadFile(filepath.Join(backing, "f"))
		if err != nil {
			t.Fatal(err)
		}
		ok := false
		for k := 0; k <= 2; k++ {
			ok = ok || string(got) == strings.Repeat("u", 512*k)+strings.Repeat("n", 2000-512*k)
		}
		if !ok {
			t.Errorf("seed %d: got %q...", seed, abbrev(got))
		}
	}
}

func TestUnmountKeepsEverything(t *testing.T) {
	p, backing, mnt := setup(t, map[string]string{"f": "old", "gone": "x"})
	writeAt(t, filepath.Join(mnt, "f"), "new", 0, false)
	writeAt(t, filepath.Join(mnt, "created"), "created", 0, false)
	if err := os.Remove(filepath.Join(mnt, "gone")); err != nil {
		t.Fatal(err)
	}
	want := tree(t, mnt)
	f, err := os.Open(filepath.Join(mnt, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Unmount(); err == nil {
		t.Error("Unmount with an open file succeeded")
	}
	f.Close()
	if err := p.Unmount(); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, backing); got != want {
		t.Errorf("after Unmount:\n%s\nwant:\n%s", got, want)
	}
	if err := p.Cut(); !errors.Is(err, powercut.ErrUnmounted) {
		t.Errorf("Cut after Unmount: %v, want ErrUnmounted", err)
	}
}

// TestCutWithOpenFiles cuts while a file is open and a goroutine writes
// to it: the writes after the cut fail and leave nothing.
func TestCutWithOpenFiles(t *testing.T) {
	p, backing, mnt := setup(t, map[string]string{"f": "synced"})
	f, err := os.OpenFile(filepath.Join(mnt, "f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := os.Open(mnt)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	done := make(chan error)
	go func() {
		var err error
		for i := 0; err == nil; i++ {
			_, err = f.WriteAt([]byte(fmt.Sprintf("write %d ", i)), int64(i%100))
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cut(t, p)
	select {
	case err := <-done:
		t.Logf("writer stopped with %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("writes still succeed after the cut")
	}
	if _, err := f.WriteAt([]byte("late"), 0); err == nil {
		t.Error("write after the cut succeeded")
	}
	if err := d.Sync(); err == nil {
		t.Error("directory fsync after the cut succeeded")
	}
	wantFile(t, filepath.Join(backing, "f"), "synced")
	if err := p.Cut(); !errors.Is(err, powercut.ErrUnmounted) {
		t.Errorf("second Cut: %v, want ErrUnmounted", err)
	}
}

// TestCutUnmounts: after a plain Cut the mount point is the bare
// directory again, where writes by path succeed (what
// WithDeadMountAfterCut is for).
func TestCutUnmounts(t *testing.T) {
	p, backing, mnt := setup(t, map[string]string{"f": "synced"})
	cut(t, p)
	if err := os.WriteFile(filepath.Join(mnt, "late"), []byte("late"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, filepath.Join(backing, "late"))
}

func TestDeadMountAfterCut(t *testing.T) {
	p, backing, mnt := setup(t, map[string]string{"f": "synced"}, powercut.WithDeadMountAfterCut())
	f, err := os.OpenFile(filepath.Join(mnt, "f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	writeAt(t, filepath.Join(mnt, "f"), "unsynced", 0, false)
	cut(t, p)
	if _, err := f.WriteAt([]byte("late"), 0); err == nil {
		t.Error("write to an open file after the cut succeeded")
	}
	if err := durable.WriteFile(filepath.Join(mnt, "g"), []byte("late"), 0o644); !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("write by path after the cut: %v, want ENOTCONN", err)
	}
	if _, err := os.ReadDir(mnt); err == nil {
		t.Error("listing the mount point after the cut succeeded")
	}
	wantFile(t, filepath.Join(backing, "f"), "synced")
	wantMissing(t, filepath.Join(backing, "g"))
	if err := p.Unmount(); err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(mnt); err != nil || len(ents) != 0 {
		t.Errorf("mount point after Unmount: %v, %v; want an empty directory", ents, err)
	}
	if err := p.Unmount(); !errors.Is(err, powercut.ErrUnmounted) {
		t.Errorf("second Unmount: %v, want ErrUnmounted", err)
	}
}

func TestStashIsHidden(t *testing.T) {
	p, backing, mnt := setup(t, map[string]string{"f": "x"})
	ents, err := os.ReadDir(backing)
	if err != nil {
		t.Fatal(err)
	}
	var stash string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".powercut") {
			stash = e.Name()
		}
	}
	if stash == "" {
		t.Fatalf("no stash in %v", ents)
	}
	if _, err := os.Stat(filepath.Join(mnt, stash)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stash through the mount: %v, want ErrNotExist", err)
	}
	if err := os.Mkdir(filepath.Join(mnt, stash), 0o755); err == nil {
		t.Error("creating the stash's name succeeded")
	}
	cut(t, p)
	if _, err := os.Stat(filepath.Join(backing, stash)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stash after the cut: %v, want it gone", err)
	}
}

// TestMixed runs a longer sequence with some things synced and some
// not.
func TestMixed(t *testing.T) {
	p, backing, mnt := setup(t, map[string]string{"db/data": "v1", "db/log": "l1", "cfg": "c1"})
	m := func(name string) string { return filepath.Join(mnt, name) }
	// A durable new directory with a durable file.
	if err := os.Mkdir(m("db/wal"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeAt(t, m("db/wal/1"), "segment 1", 0, true)
	syncPath(t, m("db/wal"))
	syncPath(t, m("db"))
	// A file moved into it, not durably.
	if err := os.Rename(m("db/log"), m("db/wal/log")); err != nil {
		t.Fatal(err)
	}
	syncPath(t, m("db/wal"))
	// Synced data, unsynced tail.
	writeAt(t, m("db/data"), "v2", 0, true)
	writeAt(t, m("db/data"), "v2 and a tail", 0, false)
	// An unsynced directory removal and re-creation.
	if err := os.Remove(m("cfg")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(m("cfg"), 0o755); err != nil {
		t.Fatal(err)
	}
	cut(t, p)
	b := func(name string) string { return filepath.Join(backing, name) }
	wantFile(t, b("db/wal/1"), "segment 1")
	wantFile(t, b("db/log"), "l1")
	wantMissing(t, b("db/wal/log"))
	wantFile(t, b("db/data"), "v2")
	wantFile(t, b("cfg"), "c1")
}

// TestNoGoroutineLeak checks that the FUSE server's goroutines end with
// Cut and with Unmount.
func TestNoGoroutineLeak(t *testing.T) {
	powercut.Require(t)
	for _, how := range []string{"cut", "unmount", "cut with an open file", "cut to a dead mount"} {
		t.Run(how, func(t *testing.T) {
			backing, mnt := t.TempDir(), t.TempDir()
			before := runtime.NumGoroutine()
			var opts []powercut.Option
			if how == "cut to a dead mount" {
				opts = append(opts, powercut.WithDeadMountAfterCut())
			}
			p, err := powercut.Mount(backing, mnt, opts...)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 20 {
				writeAt(t, filepath.Join(mnt, fmt.Sprint(i)), "data", 0, i%2 == 0)
			}
			if _, err := os.ReadDir(mnt); err != nil {
				t.Fatal(err)
			}
			switch how {
			case "cut":
				err = p.Cut()
			case "unmount":
				err = p.Unmount()
			case "cut to a dead mount":
				// The server's goroutines end at the cut, before
				// Unmount detaches the dead mount.
				if err = p.Cut(); err == nil {
					defer func() {
						if err := p.Unmount(); err != nil {
							t.Error(err)
						}
					}()
				}
			default:
				f, ferr := os.Open(filepath.Join(mnt, "1"))
				if ferr != nil {
					t.Fatal(ferr)
				}
				err = p.Cut()
				f.Close()
			}
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				buf := make([]byte, 1<<20)
				stacks := string(buf[:runtime.Stack(buf, true)])
				if !strings.Contains(stacks, "go-fuse") && runtime.NumGoroutine() <= before {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d goroutines, %d before mounting:\n%s", runtime.NumGoroutine(), before, stacks)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestMountErrors(t *testing.T) {
	powercut.Require(t)
	dir := t.TempDir()
	if _, err := powercut.Mount(dir, filepath.Join(dir, "missing")); err == nil {
		t.Error("Mount on a missing mount point succeeded")
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := powercut.Mount(dir, filepath.Join(dir, "sub")); err == nil {
		t.Error("Mount inside the backing directory succeeded")
	}
	if _, err := powercut.Mount(dir, t.TempDir(), powercut.WithTornWrites(1000, rand.New(rand.NewPCG(1, 1)))); err == nil {
		t.Error("torn writes in units of 1000 accepted")
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 1 {
		t.Errorf("failed mounts left %v, %v", ents, err)
	}
}
