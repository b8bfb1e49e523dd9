package testutil_test

import (
	"fmt"
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
