package rdscsi

import (
	"github.com/container-storage-interface/spec/lib/go/csi"
)

// checkCapability validates one volume capability and reports whether it
// asks for a raw block device. Supported: every single-node mode with
// block or an ext4/xfs mount, and MULTI_NODE_MULTI_WRITER for raw block
// only (live migration, two nodes for its duration).
func checkCapability(vc *csi.VolumeCapability) (block bool, err error) {
	if vc == nil {
		return false, errorf(ErrInvalidArgument, "volume capability is required")
	}
	switch t := vc.GetAccessType().(type) {
	case *csi.VolumeCapability_Block:
		block = true
	case *csi.VolumeCapability_Mount:
		switch fs := t.Mount.GetFsType(); fs {
		case "", "ext4", "xfs":
		default:
			return false, errorf(ErrInvalidArgument, "filesystem %q is not supported (ext4, xfs)", clipInput(fs))
		}
	default:
		return false, errorf(ErrInvalidArgument, "access type (block or mount) is required")
	}
	switch m := vc.GetAccessMode().GetMode(); m {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
	case csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:
		if !block {
			return false, errorf(ErrInvalidArgument, "access mode %v needs a raw block volume: a filesystem cannot be mounted on two nodes", m)
		}
	case csi.VolumeCapability_AccessMode_UNKNOWN:
		return false, errorf(ErrInvalidArgument, "access mode is required")
	default:
		return false, errorf(ErrInvalidArgument, "access mode %v is not supported", m)
	}
	return block, nil
}
