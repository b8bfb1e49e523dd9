package durable_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/srvlab/rds-csi/internal/durable"
	"github.com/srvlab/rds-csi/internal/powercut"
)

func TestSyncDir(t *testing.T) {
	dir := t.TempDir()
	if err := durable.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := durable.SyncDir(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing directory: %v, want ErrNotExist", err)
	}
}

func TestWriteFileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "rec.json")
	for _, content := range []string{"first", "second, longer than the first", "3"} {
		if err := durable.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Fatalf("read %q, want %q", got, content)
		}
	}
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file: %v", len(entries), entries)
	}
}

func TestWriteFileFailureLeavesOldContent(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "rec.json")
	if err := durable.WriteFile(name, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A directory cannot be renamed over: the write fails after the
	// temporary file was written.
	blocked := filepath.Join(dir, "blocked")
	if err := os.MkdirAll(filepath.Join(blocked, "child"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := durable.WriteFile(blocked, []byte("new"), 0o600); err == nil {
		t.Fatal("writing over a non-empty directory succeeded")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "rec.json" && e.Name() != "blocked" {
			t.Errorf("left behind %s", e.Name())
		}
	}
	if got, _ := os.ReadFile(name); string(got) != "old" {
		t.Errorf("file holds %q, want the old content", got)
	}
	if err := durable.WriteFile(filepath.Join(dir, "missing", "x"), []byte("x"), 0o600); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing directory: %v, want ErrNotExist", err)
	}
}

func TestMkdirAll(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b", "c")
	if err := durable.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("created %v, %v", fi, err)
	}
	if err := durable.MkdirAll(dir, 0o700); err != nil {
		t.Errorf("again: %v", err)
	}
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := durable.MkdirAll(file, 0o700); err == nil {
		t.Error("MkdirAll over a file succeeded")
	}
	if err := durable.MkdirAll(filepath.Join(file, "x"), 0o700); err == nil {
		t.Error("MkdirAll below a file succeeded")
	}
}

// TestPowerCut: what MkdirAll and WriteFile report done survives a power
// cut (internal/powercut), and what plain calls leave unsynced does not.
func TestPowerCut(t *testing.T) {
	pfs, backing, mnt := powercut.MountTemp(t)
	if err := durable.MkdirAll(filepath.Join(mnt, "a", "b"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := durable.WriteFile(filepath.Join(mnt, "a", "b", "kept"), []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The careless way, for contrast: gone after the cut.
	if err := os.MkdirAll(filepath.Join(mnt, "c", "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "a", "b", "lost"), []byte("lost"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := pfs.Cut(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(backing, "a", "b", "kept")); err != nil || string(b) != "kept" {
		t.Errorf("durable file after the cut: %q, %v", b, err)
	}
	for _, p := range []string{filepath.Join("a", "b", "lost"), "c"} {
		if _, err := os.Stat(filepath.Join(backing, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after the cut: %v, want it gone", p, err)
		}
	}
}
