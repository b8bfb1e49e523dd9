package powercut

import (
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
