package rdscsitest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/srvlab/rds-csi/rdsclient/rdstest"
	"github.com/srvlab/rds-csi/rdscsi"
	"github.com/srvlab/rds-csi/rdscsi/nvme"
	"github.com/srvlab/rds-csi/rdscsi/rdscsitest"
)

// A LoopConnector lets a NodeServer stage the fake's disks as loop
// devices (root and /dev/loop-control needed; not run as a test).
func ExampleNewLoopConnector() {
	srv, err := rdstest.NewServer()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	conn := rdscsitest.NewLoopConnector(srv)
	defer conn.Close() // detaches every loop device it attached

	ns, err := rdscsi.NewNodeServer("node-1", conn, rdscsi.WithStateDir(filepath.Join(os.TempDir(), "rds-csi-node")))
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = ns // register on a grpc.Server, or call its methods directly
}

// A LoopConnector keeps the contract of the real connector: a disk the
// fake does not export is not connected, and an NQN without the driver's
// prefix (a host's boot volume) is refused before anything runs, which
// rdscsi reports as InvalidArgument.
func ExampleLoopConnector() {
	srv, err := rdstest.NewServer()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	conn := rdscsitest.NewLoopConnector(srv)
	defer conn.Close()
	ctx := context.Background()

	_, err = conn.Device(ctx, rdscsi.NQN(rdscsi.VolumeIDForName("data")))
	fmt.Println(errors.Is(err, nvme.ErrNotConnected))

	const boot = "nqn.2014-08.org.nvmexpress:boot"
	_, err = conn.Connect(ctx, nvme.Target{Address: "127.0.0.1", Port: 4420, NQN: boot})
	fmt.Println(errors.Is(err, nvme.ErrForeign), rdscsi.Code(err), srv.Initiators(boot))
	// Output:
	// true
	// true InvalidArgument 0
}
