package attachtest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/attach/attachtest"
)

// Wrap makes a store fail, here to show that a failed write leaves the
// Manager's state unchanged.
func ExampleWrap() {
	ctx := context.Background()
	broken := errors.New("disk full")
	store := attachtest.Wrap(attach.NewMemStore(), func(_ context.Context, op attachtest.Op, volumeID string) error {
		if op == attachtest.OpPut && volumeID == "pvc-b" {
			return broken
		}
		return nil
	})
	m, err := attach.NewManager(ctx, store)
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Attach(ctx, attach.Request{VolumeID: "pvc-a", NodeID: "node-1", Mode: attach.Exclusive}))
	err = m.Attach(ctx, attach.Request{VolumeID: "pvc-b", NodeID: "node-1", Mode: attach.Exclusive})
	fmt.Println(errors.Is(err, broken))
	_, ok := m.Get("pvc-b")
	fmt.Println(ok, m.Counts().Volumes)
	// Output:
	// <nil>
	// true
	// false 1
}

// A Store implementation proves itself by running the suite from its own
// tests (here as a function value, since examples cannot take a
// *testing.T).
func ExampleTestStore() {
	testMemStore := func(t *testing.T) {
		attachtest.TestStore(t, func(*testing.T) attach.Store { return attach.NewMemStore() })
	}
	_ = testMemStore
}
