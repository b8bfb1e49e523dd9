// Package testutil holds small helpers shared by the module's tests. It
// is internal: not part of the public API.
package testutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// SyncBuffer is a bytes.Buffer that a logger (or a process's output
// reader) and a test may use at once. The zero value is ready to use.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// WriteString appends v.
func (s *SyncBuffer) WriteString(v string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.WriteString(v)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// MainWithBinary is a TestMain body for tests that run a command of this
// module as a process: it builds the main package pkg (a directory, as go
// build takes it; with -race when race is set) into a temporary
// directory as name, stores the binary's path in *bin, runs the tests and
// removes the directory. It returns the exit code for os.Exit; a failed
// build is reported on stderr and is 1.
func MainWithBinary(m *testing.M, pkg, name string, race bool, bin *string) int {
	dir, err := os.MkdirTemp("", "rds-csi-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	*bin = filepath.Join(dir, name)
	args := []string{"build", "-o", *bin}
	if race {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, pkg)...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building %s: %v\n", pkg, err)
		return 1
	}
	return m.Run()
}

// ForbidDeps fails t when package pkg (an import path) depends, directly
// or through others, on a package at or below one of the import paths in
// forbidden; pkg itself is exempt. It runs "go list -deps" with the go
// binary of runtime.GOROOT and skips t only when that binary is missing.
func ForbidDeps(t testing.TB, pkg string, forbidden ...string) {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		t.Skipf("no go binary to list dependencies: %v", err)
	}
	cmd := exec.Command(goBin, "list", "-deps", pkg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr.String())
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == pkg {
			continue
		}
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}
