package rdscsi

import (
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/attach"
)

// access is how the driver serves one access mode on one kind of volume
// (raw block, or a mounted file system).
type access struct {
	// supported: the controller creates, validates and publishes such
	// volumes, and the node stages and publishes them. Otherwise both
	// refuse with InvalidArgument, giving refusal as the reason.
	supported bool
	refusal   string
	// attachment is how ControllerPublishVolume attaches: Exclusive (one
	// node) or Migratable (a second node for a live migration).
	attachment attach.Mode
	// readOnly: the node mounts the file system, or binds the device,
	// read-only whatever the request's readonly flag says.
	readOnly bool
}

var (
	exclusive         = access{supported: true, attachment: attach.Exclusive}
	exclusiveReadOnly = access{supported: true, attachment: attach.Exclusive, readOnly: true}
	migratable        = access{supported: true, attachment: attach.Migratable}
	multiNodeFS       = access{refusal: "a file system cannot be mounted on two nodes; use a raw block volume"}
	multiNode         = access{refusal: "a volume is attached to one node, or to two during a live migration"}
)

// accessTable is the one capability model of the driver: for every access
// mode, how it is served on a raw block volume and on a file system
// (ext4 or xfs). The controller (CreateVolume, ValidateVolumeCapabilities,
// ControllerPublishVolume, ControllerExpandVolume, GetCapacity) and the
// node (NodeStageVolume, NodePublishVolume, NodeExpandVolume) both read it
// through parseCapability, so they admit and refuse the same set. Modes
// missing here (UNKNOWN, values of later spec versions) are refused.
var accessTable = map[csi.VolumeCapability_AccessMode_Mode]struct{ block, mount access }{
	csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER:        {block: exclusive, mount: exclusive},
	csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY:   {block: exclusiveReadOnly, mount: exclusiveReadOnly},
	csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER: {block: exclusive, mount: exclusive},
	csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:  {block: exclusive, mount: exclusive},
	// KubeVirt live migration: the device is open on two nodes while the
	// VM moves; the hypervisor, not a file system, orders the writes.
	csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:  {block: migratable, mount: multiNodeFS},
	csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:   {block: multiNode, mount: multiNode},
	csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER: {block: multiNode, mount: multiNode},
}

// capability is a validated VolumeCapability.
type capability struct {
	access
	mode       csi.VolumeCapability_AccessMode_Mode
	block      bool
	fsType     string // mount volumes: "ext4" (the default) or "xfs"
	mountFlags []string
}

// parseCapability validates a volume capability against accessTable and
// what a mount may carry. Every error wraps ErrInvalidArgument.
func parseCapability(vc *csi.VolumeCapability) (capability, error) {
	var c capability
	if vc == nil {
		return c, errorf(ErrInvalidArgument, "volume capability is required")
	}
	m := vc.GetMount()
	switch {
	case vc.GetBlock() != nil:
		c.block = true
	case m != nil:
		switch c.fsType = m.GetFsType(); c.fsType {
		case "":
			c.fsType = "ext4"
		case "ext4", "xfs":
		default:
			return c, errorf(ErrInvalidArgument, "file system %q is not supported (ext4, xfs)", clipInput(c.fsType))
		}
	default:
		return c, errorf(ErrInvalidArgument, "access type (block or mount) is required")
	}
	c.mode = vc.GetAccessMode().GetMode()
	if c.mode == csi.VolumeCapability_AccessMode_UNKNOWN {
		return c, errorf(ErrInvalidArgument, "access mode is required")
	}
	row, ok := accessTable[c.mode]
	if !ok {
		return c, errorf(ErrInvalidArgument, "access mode %v is not supported", c.mode)
	}
	kind := "block"
	if c.access = row.block; !c.block {
		kind, c.access = "mount", row.mount
	}
	if !c.supported {
		return c, errorf(ErrInvalidArgument, "access mode %v is not supported for %s volumes: %s", c.mode, kind, c.refusal)
	}
	if c.block {
		return c, nil
	}
	if m.GetVolumeMountGroup() != "" {
		return c, errorf(ErrInvalidArgument, "volume mount group is not supported")
	}
	if err := checkMountFlags(m.GetMountFlags()); err != nil {
		return c, err
	}
	c.mountFlags = slices.Clone(m.GetMountFlags())
	return c, nil
}
