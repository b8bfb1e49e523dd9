package nvme

import (
	"context"
	"errors"
)

// Error classes. Every error a TCPConnector returns for one of these
// conditions wraps the sentinel, and other Connectors should do the same:
// rdscsi maps each class to a gRPC code.
var (
	// ErrNotConnected: no namespace device of the NQN exists on this host.
	ErrNotConnected = errors.New("nvme: subsystem not connected")
	// ErrForeign: the NQN does not carry the connector's prefix; nothing
	// was done.
	ErrForeign = errors.New("nvme: nqn not managed by this driver")
	// ErrInvalid: a target field is malformed; nothing was run.
	ErrInvalid = errors.New("nvme: invalid argument")
	// ErrCommand: nvme-cli failed.
	ErrCommand = errors.New("nvme: command failed")
	// ErrTimeout: a device did not appear or disappear in time. It also
	// wraps the context error.
	ErrTimeout = errors.New("nvme: timed out")
)

// DefaultNQNPrefix is the prefix of the NQNs a TCPConnector manages by
// default: the MikroTik NQN namespace followed by the volume prefix of
// rds-csi ("pvc-"), so that rdscsi.NQN of every volume ID carries it.
const DefaultNQNPrefix = "nqn.2000-02.com.mikrotik:pvc-"

// Target is an NVMe/TCP subsystem to connect to.
type Target struct {
	Address string
	Port    int
	NQN     string
	// CtrlLossTmo is the controller loss timeout in seconds (-1 retries
	// forever); ReconnectDelay and KeepAliveTmo are in seconds. Zero
	// leaves nvme-cli's default.
	CtrlLossTmo    int
	ReconnectDelay int
	KeepAliveTmo   int
}

// Connector attaches NVMe/TCP subsystems to this host and resolves their
// block devices. Implementations must resolve the device afresh on every
// call (never remember /dev/nvmeXnY: controller numbers change across
// reconnects) and must be idempotent: connecting a connected target
// succeeds, disconnecting an absent one succeeds. They must be safe for
// concurrent use.
type Connector interface {
	// Connect connects the target if needed and returns its block device.
	Connect(ctx context.Context, t Target) (device string, err error)
	// Device returns the block device of a connected NQN, or an error
	// wrapping ErrNotConnected.
	Device(ctx context.Context, nqn string) (string, error)
	// Disconnect disconnects the NQN and returns only when its device is
	// gone.
	Disconnect(ctx context.Context, nqn string) error
}

// Rescanner is implemented by Connectors that can make the kernel re-read
// the size of an attached device, so that a grown namespace shows its new
// size. rdscsi's NodeExpandVolume uses it before growing a file system.
type Rescanner interface {
	Rescan(ctx context.Context, nqn string) error
}

// Runner runs a command and returns its combined output. The error is
// non-nil when the command could not run or exited non-zero. It lets tests
// and embedders replace how nvme-cli is executed.
type Runner func(ctx context.Context, name string, args ...string) ([]byte, error)
