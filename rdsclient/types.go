package rdsclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"
)

// Config holds the settings a Client needs to reach an RDS: who it is and
// whom it trusts. Tunables, timeouts among them, are Options. A Config is
// copied by Dial before defaults are applied, so the caller may reuse it.
type Config struct {
	// User is the RouterOS user name. Console flags such as "+ct" may be
	// appended; Dial adds "+ct" (colours off, no terminal detection) when
	// the name carries no flags. A width flag ("admin+ct200w") also tells
	// the client where print detail output wraps; without one 80 columns
	// are assumed (rdsclient/docs/device.md, "Wrapping").
	User string
	// Auth lists the SSH authentication methods, usually one
	// ssh.PublicKeys.
	Auth []ssh.AuthMethod
	// HostKeyCallback verifies the RDS host key. It is mandatory: Dial
	// fails with ErrInvalid when it is nil. Build it with FixedHostKey,
	// HostKeyFromLine or KnownHosts; there is no trust on first use.
	HostKeyCallback ssh.HostKeyCallback
	// HostKeyAlgorithms optionally restricts the accepted host key types.
	HostKeyAlgorithms []string
}

// NVMeExport describes how a disk is exported over NVMe/TCP.
type NVMeExport struct {
	// Port is the NVMe/TCP service port; 0 in a DiskSpec means 4420.
	Port int
	// NQN is the subsystem NQN, unique per disk.
	NQN string
}

// DiskSpec describes a file-backed disk to create or copy.
type DiskSpec struct {
	// Slot is the unique disk name, e.g. "pvc-<uuid>". It must match
	// [a-z0-9][a-z0-9-]* and be at most 63 bytes.
	Slot string
	// FilePath is the absolute path of the backing file, starting with
	// the pool mount point: "/storage-pool/k8s/pvc-<uuid>.img".
	FilePath string
	// SizeBytes is the requested size. It is rounded up to a whole MiB
	// (see RoundUpSize) before it is sent. For CopyDisk, 0 keeps the
	// source size.
	SizeBytes int64
	// Export, when set, exports the disk over NVMe/TCP.
	Export *NVMeExport
}

// Disk is a disk as read back from the RDS.
type Disk struct {
	Slot      string
	Type      string // "file" for file-backed disks
	FilePath  string // empty for non-file disks
	SizeBytes int64  // exact, from the size= field
	// Export is nil when the disk is not exported over NVMe/TCP.
	Export *NVMeExport
}

// Capacity of a storage pool in bytes.
type Capacity struct {
	Pool       string
	TotalBytes int64
	FreeBytes  int64
}

// File is an entry of the RouterOS /file menu. Name carries no leading
// slash, as RouterOS prints it ("storage-pool/k8s/pvc-x.img").
type File struct {
	Name         string
	Type         string // "directory", ".img file", ...
	SizeBytes    int64  // from the human-readable size, so approximate
	LastModified time.Time
}

// DiskStats is one /disk monitor-traffic snapshot.
type DiskStats struct {
	Slot          string
	ReadOps       int64
	ReadBytes     int64
	ReadRateBits  int64 // bits per second
	ReadTime      time.Duration
	WriteOps      int64
	WriteBytes    int64
	WriteRateBits int64 // bits per second
	WriteTime     time.Duration
	InFlightOps   int64
}

// Observer receives what the client does, for metrics. A metrics.Recorder
// satisfies it. Implementations must be safe for concurrent use and fast.
type Observer interface {
	// RDSCommand reports one RouterOS command: command is its menu and
	// verb ("disk add", "file print"), never its arguments; status is one
	// of "ok", "not_found", "exists", "no_space", "invalid", "in_use",
	// "unavailable", "timeout", "host_key_mismatch" (a re-dial met a
	// refused host key), "auth_failed" (a re-dial met a refused login),
	// "error".
	RDSCommand(ctx context.Context, command, status string, d time.Duration)
	// RDSConnectionState reports that the SSH connection to address went
	// up or down.
	RDSConnectionState(ctx context.Context, address string, connected bool)
	// RDSReconnect reports one re-dial, status "ok" or "error".
	RDSReconnect(ctx context.Context, status string)
}

// Error classes. Every error returned by a Client wraps exactly one of
// these, so callers test with errors.Is.
var (
	// ErrNotFound: the disk, file or pool does not exist.
	ErrNotFound = errors.New("rdsclient: not found")
	// ErrExists: an item with this slot, NQN or file already exists.
	ErrExists = errors.New("rdsclient: already exists")
	// ErrNoSpace: the pool has not enough free space. Not retryable.
	ErrNoSpace = errors.New("rdsclient: not enough space")
	// ErrInvalid: an argument was rejected, either by the client before
	// anything was sent, or by RouterOS (syntax or validation error).
	ErrInvalid = errors.New("rdsclient: invalid argument")
	// ErrInUse: the disk is still connected by an initiator.
	ErrInUse = errors.New("rdsclient: disk in use")
	// ErrUnavailable: the RDS could not be reached or the connection
	// failed; the operation may be retried.
	ErrUnavailable = errors.New("rdsclient: unavailable")
	// ErrHostKey: the RDS presented a host key that is not the pinned
	// one. Not retryable; the error is a *HostKeyError.
	ErrHostKey = errors.New("rdsclient: host key refused")
	// ErrAuth: the RDS refused the login (user or key). Not retryable;
	// the error is an *AuthError.
	ErrAuth = errors.New("rdsclient: login refused")
	// ErrUnexpectedOutput: RouterOS answered with output the client could
	// not understand (truncated or unknown format).
	ErrUnexpectedOutput = errors.New("rdsclient: unexpected output")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("rdsclient: client closed")
)

// CommandError is returned when RouterOS reports a failure for a command.
// It unwraps to its class (ErrNotFound, ErrNoSpace, ...).
type CommandError struct {
	Command    string // the full command line that was sent
	Stdout     string
	Stderr     string
	ExitStatus int
	Class      error
}

// Error names the class, the command, the exit status and the first
// part of what RouterOS printed.
func (e *CommandError) Error() string {
	msg := e.Stderr
	if msg == "" {
		msg = e.Stdout
	}
	if trimOutput(msg) == "" {
		msg = "(no output)"
	}
	return fmt.Sprintf("%v: %q (exit status %d): %s", e.Class, e.Command, e.ExitStatus, trimOutput(msg))
}

// Unwrap returns the error class.
func (e *CommandError) Unwrap() error { return e.Class }

func trimOutput(s string) string {
	const max = 200
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// MiB is the unit sizes are rounded up to.
const MiB = 1 << 20

// RoundUpSize rounds n up to the exact unit the client sends to RouterOS
// (a whole MiB). Idempotency checks must compare with the rounded size.
// Sizes of 0 or less round to 0.
func RoundUpSize(n int64) int64 {
	if n <= 0 {
		return 0
	}
	return (n + MiB - 1) / MiB * MiB
}
