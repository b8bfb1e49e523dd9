package rdstest_test

import (
	"testing"

	"github.com/srvlab/rds-csi/internal/testutil"
)

// A test that only wants the fake RDS must not pull in the CSI side;
// loop devices for a NodeServer live in rdscsi/rdscsitest.
func TestDeps(t *testing.T) {
	testutil.ForbidDeps(t, "github.com/srvlab/rds-csi/rdsclient/rdstest",
		"github.com/srvlab/rds-csi/rdscsi", // and every package below it
		"google.golang.org/grpc",
		"github.com/container-storage-interface",
		"k8s.io/mount-utils",
		"go.opentelemetry.io",
	)
}
