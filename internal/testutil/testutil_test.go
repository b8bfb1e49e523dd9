package testutil_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/srvlab/rds-csi/internal/testutil"
)

func TestSyncBufferConcurrentWrites(t *testing.T) {
	var b testutil.SyncBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprintf(&b, "%d\n", i)
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 800 {
		t.Fatalf("%d lines, want 800", n)
	}
}

func ExampleSyncBuffer() {
	var b testutil.SyncBuffer
	b.WriteString("hello, ")
	fmt.Fprint(&b, "world")
	fmt.Println(b.String())
	// Output: hello, world
}

// depsRecorder keeps what ForbidDeps reports instead of failing.
type depsRecorder struct {
	testing.TB
	errs []string
}

func (r *depsRecorder) Helper() {}
func (r *depsRecorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestForbidDeps(t *testing.T) {
	const pkg = "github.com/srvlab/rds-csi/internal/testutil"
	r := &depsRecorder{TB: t}
	// The package itself is exempt; "os" and everything below
	// "internal" (internal/poll, ...) are dependencies; "os/exe" is not
	// a path prefix of "os/exec".
	testutil.ForbidDeps(r, pkg, pkg, "os", "internal", "os/exe")
	if !slices.Contains(r.errs, pkg+" depends on os") || !strings.Contains(strings.Join(r.errs, "\n"), " depends on internal/") {
		t.Fatalf("reported:\n%s", strings.Join(r.errs, "\n"))
	}
	for _, e := range r.errs {
		if strings.HasSuffix(e, " depends on "+pkg) || strings.HasSuffix(e, "os/exe") {
			t.Errorf("reported %q", e)
		}
	}
}
