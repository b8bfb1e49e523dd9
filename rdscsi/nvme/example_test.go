package nvme_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/srvlab/rds-csi/rdscsi/nvme"
)

// A TCPConnector resolves a subsystem's device from sysfs on every call.
// Here sysfs is a small tree in a temporary directory, as the kernel lays
// it out for a native-multipath subsystem.
func ExampleTCPConnector_Device() {
	root, err := os.MkdirTemp("", "nvme-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(root)
	const nqn = "nqn.2000-02.com.mikrotik:pvc-0b7e4a52-6f3c-4d57-9b3f-5264732d6373"
	sub := filepath.Join(root, "sys/class/nvme-subsystem/nvme-subsys2")
	for _, d := range []string{filepath.Join(sub, "nvme2n1"), filepath.Join(root, "dev")} {
		_ = os.MkdirAll(d, 0o755)
	}
	_ = os.WriteFile(filepath.Join(sub, "subsysnqn"), []byte(nqn+"\n"), 0o644)
	_ = os.WriteFile(filepath.Join(root, "dev/nvme2n1"), nil, 0o644)

	conn := nvme.NewTCPConnector(nvme.WithSysfsRoot(filepath.Join(root, "sys")), nvme.WithDevRoot(filepath.Join(root, "dev")))
	dev, err := conn.Device(context.Background(), nqn)
	fmt.Println(filepath.Base(dev), err)

	err = conn.Disconnect(context.Background(), "nqn.2014-08.org.nvmexpress:boot")
	fmt.Println(err)
	// Output:
	// nvme2n1 <nil>
	// nvme: nqn not managed by this driver: nqn.2014-08.org.nvmexpress:boot (prefix nqn.2000-02.com.mikrotik:pvc-)
}

// NewTCPConnector with a fake Runner: "nvme connect" is answered by laying
// out the sysfs entries and device node the kernel would create, so
// Connect finds the namespace device it waits for. Real nodes pass no
// options, or only WithLogger and WithTimeouts.
func ExampleNewTCPConnector() {
	root, err := os.MkdirTemp("", "nvme-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(root)
	sys, dev := filepath.Join(root, "sys"), filepath.Join(root, "dev")
	kernel := func(_ context.Context, name string, args ...string) ([]byte, error) {
		fmt.Println(name, args[0])
		if args[0] == "connect" {
			nqn := args[len(args)-1]
			_ = os.MkdirAll(filepath.Join(sys, "class/nvme/nvme0/nvme0n1"), 0o755)
			_ = os.WriteFile(filepath.Join(sys, "class/nvme/nvme0/subsysnqn"), []byte(nqn+"\n"), 0o644)
			_ = os.WriteFile(filepath.Join(sys, "class/nvme/nvme0/state"), []byte("live\n"), 0o644)
			_ = os.MkdirAll(dev, 0o755)
			_ = os.WriteFile(filepath.Join(dev, "nvme0n1"), nil, 0o644)
		}
		return nil, nil
	}
	conn := nvme.NewTCPConnector(
		nvme.WithSysfsRoot(sys),
		nvme.WithDevRoot(dev),
		nvme.WithRunner(kernel),
		nvme.WithTimeouts(5*time.Second, 5*time.Second),
	)

	var c nvme.Connector = conn // what rdscsi.NewNodeServer takes
	device, err := c.Connect(context.Background(), nvme.Target{
		Address: "10.0.0.5", Port: 4420,
		NQN: nvme.DefaultNQNPrefix + "0b7e4a52-6f3c-4d57-9b3f-5264732d6373",
	})
	fmt.Println(filepath.Base(device), err)
	// Output:
	// nvme connect
	// nvme0n1 <nil>
}
