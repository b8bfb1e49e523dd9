package rdscsi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/rdscsi/nvme"
)

// NodeGetVolumeHealth reports, from this node's view, whether the device
// of a staged volume is present and the one staged, and whether its
// staging and target paths are mounted from it.
func (n *NodeServer) NodeGetVolumeHealth(ctx context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.NodeGetVolumeHealthResponse, error) {
	h, err := n.health(ctx, req)
	if err != nil {
		return nil, Status(err)
	}
	return &csi.NodeGetVolumeHealthResponse{VolumeHealth: h}, nil
}

func (n *NodeServer) health(ctx context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.VolumeHealth, error) {
	id := req.GetVolumeId()
	if err := checkVolumeID(id); err != nil {
		return nil, err
	}
	rec, err := n.store.load(id)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, errorf(ErrNotFound, "volume %s is not staged on this node", id)
	}
	h := &csi.VolumeHealth{VolumeId: id}
	add := func(s csi.VolumeHealthErrorType, reason, format string, args ...any) {
		h.HealthStatuses = append(h.HealthStatuses, &csi.VolumeHealth_VolumeHealthEntry{Status: s, Reason: reason, Message: fmt.Sprintf(format, args...)})
	}
	_, devID, err := n.device(ctx, rec)
	switch {
	case errors.Is(err, nvme.ErrNotConnected):
		add(csi.VolumeHealthErrorType_INACCESSIBLE, "DeviceGone", "the NVMe/TCP device of the volume is gone: %v", err)
		return h, nil
	case errors.Is(err, ErrFailedPrecondition):
		add(csi.VolumeHealthErrorType_INACCESSIBLE, "DeviceMismatch", "%v", err)
		return h, nil
	case err != nil:
		add(csi.VolumeHealthErrorType_INACCESSIBLE, "DeviceUnavailable", "%v", err)
		return h, nil
	}

	var stale, unmounted []string
	check := func(p string, isStaging bool) error {
		st, err := statPath(p)
		if err != nil {
			return err
		}
		switch {
		case st.corrupted:
			stale = append(stale, p+" (corrupted)")
		case !st.mounted():
			unmounted = append(unmounted, p)
		case rec.Block && !isStaging:
			if st.info == nil || st.info.Mode()&os.ModeDevice == 0 {
				stale = append(stale, p)
			} else if sys, ok := st.info.Sys().(*syscall.Stat_t); !ok || uint64(sys.Rdev) != devID.rdev() {
				stale = append(stale, p)
			}
		default:
			if top := st.top(); uint32(top.Major) != devID.Major || uint32(top.Minor) != devID.Minor {
				stale = append(stale, p)
			} else if isStaging && !rec.ReadOnly && st.readOnly() {
				add(csi.VolumeHealthErrorType_DEGRADED, "ReadOnlyFileSystem", "%s is mounted read-only (file system errors?)", p)
			}
		}
		return nil
	}
	paths := map[string]bool{}
	if !rec.Block {
		paths[rec.StagingPath] = true
	}
	for t := range rec.Targets {
		paths[t] = false
	}
	if p := req.GetVolumePublishPath(); filepath.IsAbs(p) {
		paths[filepath.Clean(p)] = false
	}
	for _, p := range slices.Sorted(maps.Keys(paths)) {
		if err := check(p, paths[p]); err != nil {
			return nil, err
		}
	}
	if len(stale) > 0 {
		n.o.recorder.StaleMount(ctx)
		add(csi.VolumeHealthErrorType_INACCESSIBLE, "StaleMount", "not mounted from the volume's current device: %s", strings.Join(stale, ", "))
	}
	if len(unmounted) > 0 {
		n.o.recorder.StaleMount(ctx)
		add(csi.VolumeHealthErrorType_INACCESSIBLE, "NotMounted", "not mounted: %s", strings.Join(unmounted, ", "))
	}
	return h, nil
}
