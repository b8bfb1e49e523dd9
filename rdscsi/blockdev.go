package rdscsi

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// deviceIdentity reads what identifies the block device dev now.
func deviceIdentity(dev string) (deviceRecord, error) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return deviceRecord{}, errorf(ErrDeviceNotReady, "device %s: %v", dev, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return deviceRecord{}, errorf(ErrFailedPrecondition, "%s is not a block device", dev)
	}
	rdev := uint64(st.Rdev)
	r := deviceRecord{Path: dev, Major: unix.Major(rdev), Minor: unix.Minor(rdev)}
	size, err := blockSize(dev)
	if err != nil {
		return deviceRecord{}, err
	}
	r.SizeBytes = size
	r.Serial = deviceSerial(r.Major, r.Minor)
	return r, nil
}

func (d deviceRecord) rdev() uint64 { return unix.Mkdev(d.Major, d.Minor) }

// deviceSerial returns a name-independent identity of a block device: the
// WWID of an NVMe namespace, or the backing file of a loop device.
func deviceSerial(major, minor uint32) string {
	base := filepath.Join(sysDevBlock, fmt.Sprintf("%d:%d", major, minor))
	for _, f := range []string{"wwid", "device/wwid"} {
		if b, err := os.ReadFile(filepath.Join(base, f)); err == nil {
			if s := strings.TrimSpace(string(b)); s != "" {
				return "wwid:" + s
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(base, "loop", "backing_file")); err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return "file:" + s
		}
	}
	return ""
}

// sameDevice refuses a device that is not the one recorded at stage time.
// A stable serial decides when both sides have one (controller numbers and
// so device numbers change across reconnects); otherwise the device number
// must match. A device never shrinks.
func sameDevice(want, got deviceRecord) error {
	if want.Serial != "" && got.Serial != "" {
		if want.Serial != got.Serial {
			return errorf(ErrFailedPrecondition, "device %s is %s, but the volume was staged on %s", got.Path, got.Serial, want.Serial)
		}
	} else if want.Major != got.Major || want.Minor != got.Minor {
		return errorf(ErrFailedPrecondition, "device %s is %d:%d, but the volume was staged on %d:%d", got.Path, got.Major, got.Minor, want.Major, want.Minor)
	}
	if got.SizeBytes < want.SizeBytes {
		return errorf(ErrFailedPrecondition, "device %s has %d bytes, less than the %d recorded at stage time", got.Path, got.SizeBytes, want.SizeBytes)
	}
	return nil
}

// blockSize returns the size in bytes of the block device at p (a device
// node, or a file bind-mounted from one).
func blockSize(p string) (int64, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, errorf(ErrDeviceNotReady, "opening %s: %v", p, err)
	}
	defer f.Close()
	return fdBlockSize(f)
}

func fdBlockSize(f *os.File) (int64, error) {
	size, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64)
	if err != nil {
		return 0, errorf(ErrDeviceNotReady, "size of %s: %v", f.Name(), err)
	}
	return int64(size), nil
}
