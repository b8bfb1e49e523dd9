package nvme_test

import (
	"testing"

	"github.com/srvlab/rds-csi/internal/testutil"
)

// The connector vocabulary must stay cheap to import: an embedder that
// only writes a Connector does not pull in the CSI side.
func TestDeps(t *testing.T) {
	testutil.ForbidDeps(t, "github.com/srvlab/rds-csi/rdscsi/nvme",
		"github.com/srvlab/rds-csi/rdscsi", // and every package below it
		"google.golang.org/grpc",
		"github.com/container-storage-interface",
		"k8s.io/mount-utils",
		"go.opentelemetry.io",
	)
}
