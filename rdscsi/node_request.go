package rdscsi

import (
	"path/filepath"
	"strconv"

	"github.com/srvlab/rds-csi/rdscsi/nvme"
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

// nodeTarget builds the NVMe/TCP target of a volume from the publish
// context, falling back to the volume context key by key.
func nodeTarget(volumeID string, publish, volume map[string]string) (nvme.Target, error) {
	get := func(k string) string {
		if v := publish[k]; v != "" {
			return v
		}
		return volume[k]
	}
	t := nvme.Target{NQN: get(ContextNQN), Port: DefaultNVMePort}
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
