package rdscsi

import (
	"context"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/rdsclient"
)

// Disks is what the ControllerServer needs from the RDS.
// *rdsclient.Client satisfies it.
type Disks interface {
	CreateDisk(ctx context.Context, spec rdsclient.DiskSpec) (rdsclient.Disk, error)
	Disk(ctx context.Context, slot string) (rdsclient.Disk, error)
	Disks(ctx context.Context, slotPrefix string) ([]rdsclient.Disk, error)
	ResizeDisk(ctx context.Context, slot string, sizeBytes int64) (rdsclient.Disk, error)
	DeleteDisk(ctx context.Context, slot string) error
	CopyDisk(ctx context.Context, sourceSlot string, spec rdsclient.DiskSpec) (rdsclient.Disk, error)
	Capacity(ctx context.Context, pool string) (rdsclient.Capacity, error)
	Files(ctx context.Context, dirPrefix string) ([]rdsclient.File, error)
	// RemoveFile removes a file; a missing file is not an error. The
	// controller uses it to finish a deletion whose disk is gone but
	// whose backing file was left behind.
	RemoveFile(ctx context.Context, path string) error
	Ping(ctx context.Context) error
}

// Attachments is what the ControllerServer needs to track who is attached
// where. *attach.Manager satisfies it.
type Attachments interface {
	Attach(ctx context.Context, req attach.Request) error
	Detach(ctx context.Context, volumeID, nodeID string) error
	Get(volumeID string) (attach.Attachment, bool)
}

// NodeAttachments is implemented by Attachments that can list the volumes
// attached to a node; *attach.Manager does. WithMaxVolumesPerNode needs
// it.
type NodeAttachments interface {
	ListByNode(nodeID string) []attach.Attachment
}

// NodeLookup reports whether a node exists. It returns an error when it
// cannot tell.
type NodeLookup func(ctx context.Context, nodeID string) (bool, error)

// Target is an NVMe/TCP subsystem to connect to.
type Target struct {
	Address string
	Port    int
	NQN     string
	// CtrlLossTmo is the controller loss timeout in seconds (-1 retries
	// forever); ReconnectDelay and KeepAliveTmo are in seconds. Zero
	// leaves the initiator's default.
	CtrlLossTmo    int
	ReconnectDelay int
	KeepAliveTmo   int
}

// Connector attaches NVMe/TCP subsystems to this node and resolves their
// block devices. Implementations must resolve the device afresh on every
// call (never remember /dev/nvmeXnY) and must be idempotent: connecting a
// connected target succeeds, disconnecting an absent one succeeds.
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
