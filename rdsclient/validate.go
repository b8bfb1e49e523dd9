package rdsclient

import (
	"strconv"
	"strings"

	"github.com/srvlab/rds-csi/internal/routeros"
)

// MaxDiskSize is the largest disk size the client sends (1 PiB). Larger
// requests are surely mistakes and fail with ErrInvalid.
const MaxDiskSize = int64(1) << 50

// defaultNVMePort is used when a DiskSpec export leaves Port zero.
const defaultNVMePort = 4420

// quoted validates v with check and returns it quoted for the console.
func quoted(what, v string, check func(string) error) (string, error) {
	if err := check(v); err != nil {
		return "", invalidf("%s: %w", what, err)
	}
	q, err := routeros.Quote(v)
	if err != nil {
		return "", invalidf("%s: %w", what, err)
	}
	return q, nil
}

func quoteSlot(what, slot string) (string, error) { return quoted(what, slot, routeros.ValidSlot) }

// checkFilePath accepts an absolute path inside a pool:
// "/<pool>/<name>[/<name>...]".
func checkFilePath(p string) error {
	pool, err := routeros.PoolOf(p)
	if err != nil {
		return invalidf("file path: %w", err)
	}
	if len(p) <= len(pool)+2 {
		return invalidf("file path %q: must be /<pool>/<file>", p)
	}
	return nil
}

// fileName turns a path with or without its leading slash into the /file
// name RouterOS prints (no leading slash), accepting only a file inside a
// pool.
func fileName(p string) (string, error) {
	name := strings.TrimPrefix(p, "/")
	if err := checkFilePath("/" + name); err != nil {
		return "", err
	}
	return name, nil
}

// dirPrefixName validates a /file name prefix ("storage-pool/k8s", with or
// without leading slash, optionally with a trailing slash).
func dirPrefixName(p string) (string, error) {
	name := strings.TrimPrefix(p, "/")
	trimmed := strings.TrimSuffix(name, "/")
	// A prefix is the pool itself or a directory in it: the first
	// component must be a valid pool name.
	if _, err := routeros.PoolOf("/" + trimmed); err != nil {
		return "", invalidf("directory prefix %q: %w", p, err)
	}
	return name, nil
}

// diskAddArgs validates spec and renders the arguments of /disk add that
// follow "type=file". sizeOptional allows SizeBytes 0 (copies keep the
// source size). It returns the rounded size (0 when omitted).
func diskAddArgs(spec DiskSpec, sizeOptional bool) (string, int64, error) {
	slot, err := quoteSlot("slot", spec.Slot)
	if err != nil {
		return "", 0, err
	}
	if err := checkFilePath(spec.FilePath); err != nil {
		return "", 0, err
	}
	path, err := quoted("file path", spec.FilePath, routeros.ValidPath)
	if err != nil {
		return "", 0, err
	}
	var b strings.Builder
	b.WriteString("file-path=")
	b.WriteString(path)
	var size int64
	if !sizeOptional || spec.SizeBytes != 0 {
		s, rounded, err := sizeArg(spec.SizeBytes)
		if err != nil {
			return "", 0, err
		}
		size = rounded
		b.WriteString(" file-size=")
		b.WriteString(s)
	}
	b.WriteString(" slot=")
	b.WriteString(slot)
	if spec.Export != nil {
		port := spec.Export.Port
		if port == 0 {
			port = defaultNVMePort
		}
		if err := routeros.ValidPort(port); err != nil {
			return "", 0, invalidf("nvme port: %w", err)
		}
		nqn, err := quoted("nqn", spec.Export.NQN, routeros.ValidNQN)
		if err != nil {
			return "", 0, err
		}
		b.WriteString(" nvme-tcp-export=yes nvme-tcp-server-port=")
		b.WriteString(strconv.Itoa(port))
		b.WriteString(" nvme-tcp-server-nqn=")
		b.WriteString(nqn)
	}
	return b.String(), size, nil
}

// sizeArg validates a requested size and renders it rounded up to a MiB.
func sizeArg(n int64) (string, int64, error) {
	if n <= 0 || n > MaxDiskSize {
		return "", 0, invalidf("size %d: must be 1..%d bytes", n, MaxDiskSize)
	}
	rounded := RoundUpSize(n)
	s, err := routeros.FormatSize(rounded)
	if err != nil {
		return "", 0, invalidf("size: %w", err)
	}
	return s, rounded, nil
}

// matches reports whether d is what spec asked for, with size the rounded
// requested size (0: any).
func matches(d Disk, spec DiskSpec, size int64) bool {
	if d.FilePath != spec.FilePath || (size != 0 && d.SizeBytes != size) {
		return false
	}
	if spec.Export == nil || d.Export == nil {
		return spec.Export == nil && d.Export == nil
	}
	port := spec.Export.Port
	if port == 0 {
		port = defaultNVMePort
	}
	return d.Export.Port == port && d.Export.NQN == spec.Export.NQN
}
