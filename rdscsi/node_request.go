package rdscsi

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// beginPathOp validates the volume ID and one path of an unstage or
// unpublish request, in the order the CSI spec expects errors (missing
// fields first), and takes the volume's lock.
func (n *NodeServer) beginPathOp(id, pathName, p string) (clean string, unlock func(), err error) {
	if id == "" {
		return "", nil, errorf(ErrInvalidArgument, "volume ID is required")
	}
	if clean, err = requirePath(pathName, p); err != nil {
		return "", nil, err
	}
	if err := checkVolumeID(id); err != nil {
		return "", nil, err
	}
	if unlock, err = n.lock(id); err != nil {
		return "", nil, err
	}
	return clean, unlock, nil
}

// nodeCapability is a validated VolumeCapability.
type nodeCapability struct {
	block      bool
	fsType     string
	mountFlags []string
	mode       csi.VolumeCapability_AccessMode_Mode
}

func (c nodeCapability) readerOnly() bool {
	return c.mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY ||
		c.mode == csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY
}

func parseNodeCapability(vc *csi.VolumeCapability) (nodeCapability, error) {
	var c nodeCapability
	if vc == nil {
		return c, errorf(ErrInvalidArgument, "volume capability is required")
	}
	c.mode = vc.GetAccessMode().GetMode()
	if c.mode == csi.VolumeCapability_AccessMode_UNKNOWN {
		return c, errorf(ErrInvalidArgument, "volume capability has no access mode")
	}
	if _, ok := csi.VolumeCapability_AccessMode_Mode_name[int32(c.mode)]; !ok {
		return c, errorf(ErrInvalidArgument, "unknown access mode %d", c.mode)
	}
	switch {
	case vc.GetBlock() != nil:
		c.block = true
		return c, nil
	case vc.GetMount() != nil:
	default:
		return c, errorf(ErrInvalidArgument, "volume capability has neither block nor mount access")
	}
	m := vc.GetMount()
	switch c.fsType = m.GetFsType(); c.fsType {
	case "":
		c.fsType = "ext4"
	case "ext4", "xfs":
	default:
		return c, errorf(ErrInvalidArgument, "file system %q is not supported (ext4, xfs)", clipInput(c.fsType))
	}
	if m.GetVolumeMountGroup() != "" {
		return c, errorf(ErrInvalidArgument, "volume mount group is not supported")
	}
	switch c.mode {
	case csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER:
		return c, errorf(ErrInvalidArgument, "a %s file system cannot be written from several nodes; use block access", c.fsType)
	}
	for _, f := range m.GetMountFlags() {
		switch {
		case f == "" || strings.ContainsAny(f, "\x00\n"):
			return c, errorf(ErrInvalidArgument, "mount flag %q is malformed", clipInput(f))
		case f == "bind" || f == "rbind" || f == "remount":
			return c, errorf(ErrInvalidArgument, "mount flag %q is not allowed", f)
		}
	}
	c.mountFlags = slices.Clone(m.GetMountFlags())
	return c, nil
}

// nodeTarget builds the NVMe/TCP target of a volume from the publish
// context, falling back to the volume context key by key.
func nodeTarget(volumeID string, publish, volume map[string]string) (Target, error) {
	get := func(k string) string {
		if v := publish[k]; v != "" {
			return v
		}
		return volume[k]
	}
	t := Target{NQN: get(ContextNQN), Port: DefaultNVMePort}
	if t.NQN == "" {
		t.NQN = NQN(volumeID)
	} else if t.NQN != NQN(volumeID) {
		return t, errorf(ErrInvalidArgument, "nqn %q does not belong to volume %s", clipInput(t.NQN), volumeID)
	}
	addr := get(ParamNVMeAddress)
	if addr == "" {
		return t, errorf(ErrInvalidArgument, "%s missing from publish and volume context", ParamNVMeAddress)
	}
	var err error
	if t.Address, err = checkAddress(addr); err != nil {
		return t, err
	}
	if p := get(ParamNVMePort); p != "" {
		if t.Port, err = checkPort(p); err != nil {
			return t, err
		}
	}
	for key, dst := range map[string]*int{
		ParamCtrlLossTmo:    &t.CtrlLossTmo,
		ParamReconnectDelay: &t.ReconnectDelay,
		ParamKeepAliveTmo:   &t.KeepAliveTmo,
	} {
		v := get(key)
		if v == "" {
			continue
		}
		// The same bounds the controller applied to the StorageClass.
		s, err := checkSeconds(key, v, tunableMin[key])
		if err != nil {
			return t, err
		}
		*dst, _ = strconv.Atoi(s)
	}
	return t, nil
}

// requirePath checks a path the CO must send.
func requirePath(name, p string) (string, error) {
	if p == "" {
		return "", errorf(ErrInvalidArgument, "%s is required", name)
	}
	if !filepath.IsAbs(p) {
		return "", errorf(ErrInvalidArgument, "%s %q is not absolute", name, clipInput(p))
	}
	return filepath.Clean(p), nil
}

// checkVolumeID: a missing ID is invalid; an ID of another shape cannot
// be one of ours and so does not exist.
func checkVolumeID(id string) error {
	if id == "" {
		return errorf(ErrInvalidArgument, "volume ID is required")
	}
	if !IsVolumeID(id) {
		return errorf(ErrNotFound, "volume %q does not exist", clipInput(id))
	}
	return nil
}
