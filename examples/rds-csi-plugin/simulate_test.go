package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/srvlab/rds-csi/rdscsi"
	"github.com/srvlab/rds-csi/rdscsi/nvme"
)

// Without root or loop devices, simulated staging fails before touching
// losetup, says why, and maps to FailedPrecondition (not Internal).
func TestCheckedConnectorRefusesEarly(t *testing.T) {
	why := errors.New("no loop here")
	c := &checkedConnector{check: func() error {
		return errors.Join(errNoLoop, why, rdscsi.ErrFailedPrecondition)
	}} // loop is nil: reaching it would panic
	_, err := c.Connect(context.Background(), nvme.Target{NQN: rdscsi.NQNPrefix + "pvc-x"})
	if !errors.Is(err, errNoLoop) || !errors.Is(err, why) {
		t.Fatalf("Connect: %v", err)
	}
	if got := rdscsi.Code(err); got != codes.FailedPrecondition {
		t.Fatalf("code %v, want FailedPrecondition", got)
	}
	if !strings.Contains(err.Error(), "needs root and /dev/loop-control") {
		t.Fatalf("error does not explain what is needed: %v", err)
	}
}

func TestLoopPrerequisitesMatchesMachine(t *testing.T) {
	err := loopPrerequisites()
	ok, why := loopAvailable()
	if (err == nil) != ok && why != "no mkfs.ext4" {
		t.Fatalf("loopPrerequisites() = %v, but the machine says available=%v (%s)", err, ok, why)
	}
	if err != nil && rdscsi.Code(err) != codes.FailedPrecondition {
		t.Fatalf("code %v, want FailedPrecondition", rdscsi.Code(err))
	}
}

// Without root or loop devices a simulated node says at startup that
// staging will fail, and why.
func TestWarnNoLoop(t *testing.T) {
	var buf strings.Builder
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	warnNoLoop(func() error { return nil }, logger)
	if buf.Len() != 0 {
		t.Fatalf("warned on a machine that can stage: %s", buf.String())
	}
	warnNoLoop(func() error { return fmt.Errorf("%w: running as uid 1000", errNoLoop) }, logger)
	for _, want := range []string{"level=WARN", "NodeStageVolume will fail on this machine", "run as root", "needs root and /dev/loop-control: running as uid 1000"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("warning %q lacks %q", buf.String(), want)
		}
	}
}
