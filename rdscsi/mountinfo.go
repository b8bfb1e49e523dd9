package rdscsi

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	mount "k8s.io/mount-utils"
)

// Kernel interfaces the node reads: they are its source of truth for
// devices and mounts.
const (
	procMountInfo = "/proc/self/mountinfo"
	sysDevBlock   = "/sys/dev/block"
	procRoot      = "/proc"
)

// unescapeMountPath undoes the octal escapes of /proc/*/mountinfo.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountTable reads the mount table of this process's namespace.
func mountTable() ([]mount.MountInfo, error) {
	infos, err := mount.ParseMountInfo(procMountInfo)
	if err != nil {
		return nil, fmt.Errorf("rdscsi: reading mount table: %w", err)
	}
	for i := range infos {
		infos[i].MountPoint = unescapeMountPath(infos[i].MountPoint)
		infos[i].Root = unescapeMountPath(infos[i].Root)
	}
	return infos, nil
}

// canonicalPath resolves symlinks when it can, as the mount table shows
// resolved paths; a corrupted mount cannot be resolved and stays as is.
func canonicalPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}

// mountsAt returns the mount table entries mounted on p, bottom first.
func mountsAt(p string) ([]mount.MountInfo, error) {
	infos, err := mountTable()
	if err != nil {
		return nil, err
	}
	want := canonicalPath(p)
	var out []mount.MountInfo
	for _, m := range infos {
		if m.MountPoint == want {
			out = append(out, m)
		}
	}
	return out, nil
}

// pathState describes what is at a path the CO handed us.
type pathState struct {
	exists    bool
	corrupted bool // a mount whose file system no longer answers
	mounts    []mount.MountInfo
	info      os.FileInfo // from stat, nil when missing or corrupted
}

func (s pathState) mounted() bool { return len(s.mounts) > 0 }

// top is the mount that is visible at the path.
func (s pathState) top() mount.MountInfo { return s.mounts[len(s.mounts)-1] }

func (s pathState) readOnly() bool {
	return s.mounted() && slices.Contains(s.top().MountOptions, "ro")
}

func statPath(p string) (pathState, error) {
	var s pathState
	fi, err := os.Stat(p)
	switch {
	case err == nil:
		s.exists, s.info = true, fi
	case errors.Is(err, os.ErrNotExist):
		// A dangling mount (the directory was removed under it) still
		// shows in the mount table, so look there too.
	case mount.IsCorruptedMnt(err):
		s.exists, s.corrupted = true, true
	default:
		return s, fmt.Errorf("rdscsi: checking %s: %w", p, err)
	}
	mounts, err := mountsAt(p)
	if err != nil {
		return s, err
	}
	s.mounts = mounts
	return s, nil
}
