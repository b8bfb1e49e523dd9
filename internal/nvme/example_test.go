package nvme_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/srvlab/rds-csi/internal/nvme"
)

// An Initiator resolves a subsystem's device from sysfs on every call.
// Here sysfs is a small tree in a temporary directory, as the kernel lays
// it out for a native-multipath subsystem.
func ExampleInitiator_Device() {
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

	in := nvme.New(nvme.Options{SysfsRoot: filepath.Join(root, "sys"), DevRoot: filepath.Join(root, "dev")})
	dev, err := in.Device(context.Background(), nqn)
	fmt.Println(filepath.Base(dev), err)

	err = in.Disconnect(context.Background(), "nqn.2014-08.org.nvmexpress:boot")
	fmt.Println(err)
	// Output:
	// nvme2n1 <nil>
	// nvme: nqn not managed by this driver: nqn.2014-08.org.nvmexpress:boot (prefix nqn.2000-02.com.mikrotik:pvc-)
}
