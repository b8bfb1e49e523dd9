package powercut

import (
	"errors"
	"os"
	"testing"
)

// Require skips t, with the reason, when this machine cannot mount the
// file system: it needs root and /dev/fuse. When the environment variable
// CI is set (to anything but "", "0" or "false") it fails t instead, so
// that CI cannot pass by skipping.
func Require(t testing.TB) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "powercut: mounting FUSE directly needs root"
	} else if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		reason = "powercut: cannot open /dev/fuse: " + err.Error()
	} else {
		f.Close()
	}
	if reason == "" {
		return
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "0" && ci != "false" {
		t.Fatalf("%s (CI=%s: failing rather than skipping)", reason, ci)
	}
	t.Skip(reason)
}

// MountTemp is Require, then Mount of a new temporary backing directory
// at a new temporary mount point, with a cleanup that unmounts what is
// still mounted when t ends.
func MountTemp(t testing.TB, opts ...Option) (fs *FS, backing, mountpoint string) {
	t.Helper()
	Require(t)
	backing, mountpoint = t.TempDir(), t.TempDir()
	fs, err := Mount(backing, mountpoint, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fs.Unmount(); err != nil && !errors.Is(err, ErrUnmounted) {
			t.Errorf("powercut: unmount at the end of the test: %v", err)
		}
	})
	return fs, backing, mountpoint
}
