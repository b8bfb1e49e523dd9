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
	// FileUsers maps every file path a disk names, other owners' disks
	// included, to that disk's slot: the evidence that no disk uses a
	// file before the controller removes it.
	FileUsers(ctx context.Context) (map[string]string, error)
	// ResizeDisk, DeleteDisk and CopyDisk act on a disk as the
	// controller has just read it, so that a call costs no second read.
	ResizeDisk(ctx context.Context, d rdsclient.Disk, sizeBytes int64) (rdsclient.Disk, error)
	DeleteDisk(ctx context.Context, d rdsclient.Disk) error
	CopyDisk(ctx context.Context, source rdsclient.Disk, spec rdsclient.DiskSpec) (rdsclient.Disk, error)
	Capacity(ctx context.Context, pool string) (rdsclient.Capacity, error)
	Files(ctx context.Context, dirPrefix string) ([]rdsclient.File, error)
	// FilesNamed lists the files whose name contains word, in any
	// directory: where the controller looks for a volume's orphan
	// backing files.
	FilesNamed(ctx context.Context, word string) ([]rdsclient.File, error)
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
