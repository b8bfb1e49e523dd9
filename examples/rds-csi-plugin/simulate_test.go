package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/srvlab/rds-csi/rdscsi"
)

// Without root or loop devices, simulated staging fails before touching
// losetup, says why, and maps to FailedPrecondition (not Internal).
func TestCheckedConnectorRefusesEarly(t *testing.T) {
	why := errors.New("no loop here")
	c := &checkedConnector{check: func() error {
		return errors.Join(errNoLoop, why, rdscsi.ErrFailedPrecondition)
	}} // loop is nil: reaching it would panic
	_, err := c.Connect(context.Background(), rdscsi.Target{NQN: rdscsi.NQNPrefix + "pvc-x"})
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
