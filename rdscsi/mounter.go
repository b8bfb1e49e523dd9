package rdscsi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"
)

// Kernel interfaces the node reads: they are its source of truth for
// devices and mounts.
const (
	procMountInfo = "/proc/self/mountinfo"
	sysDevBlock   = "/sys/dev/block"
	procRoot      = "/proc"
)

// ---- mount table ----

// unescapeMountPath undoes the octal escapes of /proc/*/mountinfo.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountTable reads the mount table of this process's namespace.
func mountTable() ([]mount.MountInfo, error) {
	infos, err := mount.ParseMountInfo(procMountInfo)
	if err != nil {
		return nil, fmt.Errorf("rdscsi: reading mount table: %w", err)
	}
	for i := range infos {
		infos[i].MountPoint = unescapeMountPath(infos[i].MountPoint)
		infos[i].Root = unescapeMountPath(infos[i].Root)
	}
	return infos, nil
}

// canonicalPath resolves symlinks when it can, as the mount table shows
// resolved paths; a corrupted mount cannot be resolved and stays as is.
func canonicalPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}

// mountsAt returns the mount table entries mounted on p, bottom first.
func mountsAt(p string) ([]mount.MountInfo, error) {
	infos, err := mountTable()
	if err != nil {
		return nil, err
	}
	want := canonicalPath(p)
	var out []mount.MountInfo
	for _, m := range infos {
		if m.MountPoint == want {
			out = append(out, m)
		}
	}
	return out, nil
}

// pathState describes what is at a path the CO handed us.
type pathState struct {
	exists    bool
	corrupted bool // a mount whose file system no longer answers
	mounts    []mount.MountInfo
	info      os.FileInfo // from stat, nil when missing or corrupted
}

func (s pathState) mounted() bool { return len(s.mounts) > 0 }

// top is the mount that is visible at the path.
func (s pathState) top() mount.MountInfo { return s.mounts[len(s.mounts)-1] }

func (s pathState) readOnly() bool {
	return s.mounted() && slices.Contains(s.top().MountOptions, "ro")
}

func statPath(p string) (pathState, error) {
	var s pathState
	fi, err := os.Stat(p)
	switch {
	case err == nil:
		s.exists, s.info = true, fi
	case errors.Is(err, os.ErrNotExist):
		// A dangling mount (the directory was removed under it) still
		// shows in the mount table, so look there too.
	case mount.IsCorruptedMnt(err):
		s.exists, s.corrupted = true, true
	default:
		return s, fmt.Errorf("rdscsi: checking %s: %w", p, err)
	}
	mounts, err := mountsAt(p)
	if err != nil {
		return s, err
	}
	s.mounts = mounts
	return s, nil
}

// ---- block devices ----

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
	var size uint64
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size)))
	if errno != 0 {
		return 0, errorf(ErrDeviceNotReady, "size of %s: %v", f.Name(), errno)
	}
	return int64(size), nil
}

// ---- probing and formatting ----

// probeResult is what is on a device.
type probeResult struct {
	blank  bool
	fsType string
	uuid   string
	ptType string
}

func (p probeResult) String() string {
	switch {
	case p.blank:
		return "no signature"
	case p.ptType != "":
		return "partition table " + p.ptType
	case p.fsType != "":
		return p.fsType + " file system"
	}
	return "an unknown signature"
}

// probeHead is how much of a device is read to check it is readable and
// to look for signatures ourselves.
const probeHead = 1 << 20

// probe tells what is on dev. It answers only when the answer is
// definite: blkid found a signature, or blkid reported none (exit 2) on a
// device we could read (and, when exclusive, open exclusively) with no
// signature of our own list in its first MiB. Anything else is retried
// and then fails closed with ErrDeviceNotReady, so a flaky probe can never
// lead to a format.
func (n *NodeServer) probe(ctx context.Context, dev string, exclusive bool) (probeResult, error) {
	var last error
	for attempt := 0; attempt < n.o.probeAttempts; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(n.o.probeDelay)
			select {
			case <-ctx.Done():
				t.Stop()
				return probeResult{}, ctx.Err()
			case <-t.C:
			}
		}
		r, err := n.probeOnce(ctx, dev, exclusive)
		if err == nil {
			return r, nil
		}
		last = err
		n.o.logger.WarnContext(ctx, "device probe inconclusive", "device", dev, "attempt", attempt+1, "err", err)
	}
	return probeResult{}, errorf(ErrDeviceNotReady, "cannot tell whether %s holds data (%d probes): %v", dev, n.o.probeAttempts, last)
}

func (n *NodeServer) probeOnce(ctx context.Context, dev string, exclusive bool) (probeResult, error) {
	head, err := readHead(dev, exclusive)
	if err != nil {
		return probeResult{}, err
	}
	out, err := n.exec.CommandContext(ctx, "blkid", "-p", "-s", "TYPE", "-s", "PTTYPE", "-s", "UUID", "-o", "export", dev).CombinedOutput()
	if err != nil {
		var ee utilexec.ExitError
		if errors.As(err, &ee) && ee.ExitStatus() == 2 {
			if sig := knownSignature(head); sig != "" {
				return probeResult{}, fmt.Errorf("blkid reports no signature but %s starts with a %s signature", dev, sig)
			}
			return probeResult{blank: true}, nil
		}
		return probeResult{}, fmt.Errorf("blkid %s: %v: %s", dev, err, clipInput(strings.TrimSpace(string(out))))
	}
	var r probeResult
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch k {
		case "TYPE":
			r.fsType = v
		case "UUID":
			r.uuid = v
		case "PTTYPE":
			r.ptType = v
		}
	}
	return r, nil
}

// readHead reads the first MiB of dev. Exclusive opening fails while the
// device is mounted or held, which is not a state to format in.
func readHead(dev string, exclusive bool) ([]byte, error) {
	flags := os.O_RDONLY | unix.O_CLOEXEC
	if exclusive {
		flags |= unix.O_EXCL
	}
	f, err := os.OpenFile(dev, flags, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", dev, err)
	}
	defer f.Close()
	size, err := fdBlockSize(f)
	if err != nil {
		return nil, err
	}
	if size <= 0 {
		return nil, fmt.Errorf("%s has no capacity", dev)
	}
	buf := make([]byte, min(size, probeHead))
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading %s: %w", dev, err)
	}
	return buf, nil
}

// knownSignature looks for the signatures of common file systems, volume
// managers and partition tables, as a second opinion beside blkid.
func knownSignature(b []byte) string {
	at := func(off int, magic string) bool {
		return len(b) >= off+len(magic) && string(b[off:off+len(magic)]) == magic
	}
	switch {
	case at(1080, "\x53\xef"):
		return "ext2/3/4"
	case at(0, "XFSB"):
		return "xfs"
	case at(65600, "_BHRfS_M"):
		return "btrfs"
	case at(0, "LUKS\xba\xbe"):
		return "LUKS"
	case at(512, "EFI PART"), at(4096, "EFI PART"):
		return "GPT"
	case at(510, "\x55\xaa"):
		return "MBR/boot sector"
	case at(4086, "SWAPSPACE2"), at(4086, "SWAP-SPACE"):
		return "swap"
	case at(32769, "CD001"):
		return "iso9660"
	}
	for off := 0; off < 2048; off += 512 {
		if at(off, "LABELONE") {
			return "LVM2"
		}
	}
	return ""
}

// mkfs creates a file system on a device the probe found blank. It never
// passes a force flag: mkfs.xfs then refuses any signature it sees;
// mke2fs does not check without a terminal, so the probe is its gate.
func (n *NodeServer) mkfs(ctx context.Context, dev, fsType string) error {
	var args []string
	switch fsType {
	case "ext4":
		args = []string{"-m", "0", "-E", "nodiscard", dev}
	case "xfs":
		args = []string{"-K", dev}
	default:
		return errorf(ErrInvalidArgument, "unsupported file system %q", fsType)
	}
	start := time.Now()
	out, err := n.exec.CommandContext(ctx, "mkfs."+fsType, args...).CombinedOutput()
	n.mountOp(ctx, "format", err, start)
	if err != nil {
		return fmt.Errorf("rdscsi: mkfs.%s %s: %v: %s", fsType, dev, err, clipInput(strings.TrimSpace(string(out))))
	}
	return nil
}

// ---- device users ----

// deviceUsers lists what still uses block device dev, besides this
// process: mounts of it (file systems and bind mounts of its node),
// stacked devices (device mapper, md) and processes holding it open. The
// node plugin's own descriptors are excluded: they are short-lived and
// never a reason to refuse a detach.
func deviceUsers(dev string, rec deviceRecord) ([]string, error) {
	var users []string
	name := filepath.Base(canonicalPath(dev))
	infos, err := mountTable()
	if err != nil {
		return nil, err
	}
	for _, m := range infos {
		fsMount := uint32(m.Major) == rec.Major && uint32(m.Minor) == rec.Minor
		nodeMount := m.FsType == "devtmpfs" && m.Root == "/"+name
		if fsMount || nodeMount {
			users = append(users, "mount "+m.MountPoint)
		}
	}
	holders, _ := os.ReadDir(filepath.Join(sysDevBlock, fmt.Sprintf("%d:%d", rec.Major, rec.Minor), "holders"))
	for _, h := range holders {
		users = append(users, "holder "+h.Name())
	}
	users = append(users, openers(rec.rdev())...)
	return users, nil
}

// openers returns "pid <n> (<comm>)" for every other process with the
// block device rdev open.
func openers(rdev uint64) []string {
	self := os.Getpid()
	procs, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		fdDir := filepath.Join(procRoot, p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			// Only device nodes can be our device; never stat other
			// files (a hung network file system would block us).
			if err != nil || !strings.HasPrefix(link, "/dev/") {
				continue
			}
			var st unix.Stat_t
			if unix.Stat(filepath.Join(fdDir, fd.Name()), &st) != nil {
				continue
			}
			if st.Mode&unix.S_IFMT == unix.S_IFBLK && uint64(st.Rdev) == rdev {
				comm, _ := os.ReadFile(filepath.Join(procRoot, p.Name(), "comm"))
				out = append(out, fmt.Sprintf("pid %d (%s)", pid, string(bytes.TrimSpace(comm))))
				break
			}
		}
	}
	return out
}
