package rdscsi

import (
	"context"
	"errors"
	"testing"
)

// The volume's lock goes back when the call returns, unless a kernel
// operation it started still runs: then when the last one ends.
func TestKernelOpsHoldTheVolumeUntilTheLastOperationEnds(t *testing.T) {
	var k kernelOps
	unlocked := 0
	unlock := func() { unlocked++ }

	k.release("a", unlock)
	if unlocked != 1 {
		t.Fatalf("with nothing running, release unlocked %d times", unlocked)
	}

	k.begin("b")
	k.begin("b")
	k.release("b", unlock)
	if unlocked != 1 {
		t.Fatal("unlocked while operations run")
	}
	k.end("b")
	if unlocked != 1 {
		t.Fatal("unlocked while one operation still runs")
	}
	k.end("b")
	if unlocked != 2 {
		t.Fatal("not unlocked when the last operation ended")
	}

	// Operations that end before the call returns leave it nothing to
	// wait for.
	k.begin("c")
	k.end("c")
	k.release("c", unlock)
	if unlocked != 3 || len(k.running) != 0 || len(k.unlock) != 0 {
		t.Fatalf("unlocked %d, left %v %v", unlocked, k.running, k.unlock)
	}
}

func TestWaitOpPrefersTheOutcome(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	done <- nil
	if err := waitOp(ctx, done, "op"); err != nil {
		t.Fatalf("an operation that ended: %v", err)
	}
	err := waitOp(ctx, make(chan error), "op")
	if !abandoned(err) || !errors.Is(err, context.Canceled) || Code(err).String() != "Canceled" {
		t.Fatalf("a running operation: %v (%v)", err, Code(err))
	}
	done <- errors.New("signal: killed")
	if err := waitOp(ctx, done, "op"); abandoned(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("a killed command: %v", err)
	}
}
