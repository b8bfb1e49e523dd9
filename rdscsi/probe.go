package rdscsi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	utilexec "k8s.io/utils/exec"
)

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
// mke2fs does not check without a terminal, so the probe is its gate. It
// runs as a kernel operation on volume id (see kernelOps) and is killed
// when ctx ends.
func (n *NodeServer) mkfs(ctx context.Context, id, dev, fsType string) error {
	var args []string
	switch fsType {
	case "ext4":
		args = []string{"-m", "0", "-E", "nodiscard", dev}
	case "xfs":
		args = []string{"-K", dev}
	default:
		return errorf(ErrInvalidArgument, "unsupported file system %q", fsType)
	}
	err := n.runOp(ctx, id, "format", "mkfs."+fsType+" of "+dev, func() error {
		out, err := n.exec.CommandContext(ctx, "mkfs."+fsType, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, clipInput(strings.TrimSpace(string(out))))
		}
		return nil
	})
	if err != nil && !abandoned(err) {
		return fmt.Errorf("rdscsi: mkfs.%s %s: %w", fsType, dev, err)
	}
	return err
}
