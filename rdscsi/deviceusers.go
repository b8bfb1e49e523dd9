package rdscsi

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// deviceUsers lists what still uses block device dev, besides this
// process: mounts of it (file systems and bind mounts of its node),
// stacked devices (device mapper, md), processes holding it open and,
// when none of those shows, an exclusive claim by the kernel. The
// node plugin's own descriptors are excluded: they are short-lived and
// never a reason to refuse a detach.
func deviceUsers(dev string, rec deviceRecord) ([]string, error) {
	var users []string
	name := filepath.Base(canonicalPath(dev))
	infos, err := mountTable()
	if err != nil {
		return nil, err
	}
	for _, m := range infos {
		fsMount := uint32(m.Major) == rec.Major && uint32(m.Minor) == rec.Minor
		nodeMount := m.FsType == "devtmpfs" && m.Root == "/"+name
		if fsMount || nodeMount {
			users = append(users, "mount "+m.MountPoint)
		}
	}
	holders, _ := os.ReadDir(filepath.Join(sysDevBlock, fmt.Sprintf("%d:%d", rec.Major, rec.Minor), "holders"))
	for _, h := range holders {
		users = append(users, "holder "+h.Name())
	}
	users = append(users, openers(rec.rdev())...)
	if len(users) == 0 && claimed(dev) {
		users = append(users, "the kernel (a file system gone from the mount table but not yet shut down, or an exclusive opener)")
	}
	return users, nil
}

// claimed reports whether dev is held exclusively: a file system holds
// its device until it is shut down, which can be long after it left the
// mount table (a lazy unmount with files still open, a umount still
// flushing to a dead device). Disconnecting then would lose its writes.
func claimed(dev string) bool {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		return errors.Is(err, unix.EBUSY)
	}
	_ = f.Close()
	return false
}

// openers returns "pid <n> (<comm>)" for every other process with the
// block device rdev open.
func openers(rdev uint64) []string {
	self := os.Getpid()
	procs, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		fdDir := filepath.Join(procRoot, p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			// Only device nodes can be our device; never stat other
			// files (a hung network file system would block us).
			if err != nil || !strings.HasPrefix(link, "/dev/") {
				continue
			}
			var st unix.Stat_t
			if unix.Stat(filepath.Join(fdDir, fd.Name()), &st) != nil {
				continue
			}
			if st.Mode&unix.S_IFMT == unix.S_IFBLK && uint64(st.Rdev) == rdev {
				comm, _ := os.ReadFile(filepath.Join(procRoot, p.Name(), "comm"))
				out = append(out, fmt.Sprintf("pid %d (%s)", pid, string(bytes.TrimSpace(comm))))
				break
			}
		}
	}
	return out
}
