package powercut

import (
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// ErrUnmounted is returned by Cut and Unmount once the file system has
// been cut or unmounted.
var ErrUnmounted = errors.New("powercut: file system already cut or unmounted")

// Option configures Mount.
type Option func(*config) error

type config struct {
	unit      int
	rnd       *rand.Rand
	deadMount bool
}

// WithTornWrites makes Cut keep a random prefix of each file's unsynced
// writes instead of none: the writes since the file's last fsync, in
// order and split at file offsets that are multiples of unit (512 or
// 4096), are applied up to a cut point drawn from r, anywhere from none
// to all of them. r is used only by Cut.
func WithTornWrites(unit int, r *rand.Rand) Option {
	return func(c *config) error {
		if unit != 512 && unit != 4096 {
			return fmt.Errorf("powercut: torn write unit %d, want 512 or 4096", unit)
		}
		if r == nil {
			return errors.New("powercut: torn writes need a random source")
		}
		c.unit, c.rnd = unit, r
		return nil
	}
}

// WithDeadMountAfterCut makes Cut leave the mount point mounted but dead:
// every access through it, by an open file or by a path, fails (with
// ENOTCONN, "transport endpoint is not connected") until Unmount
// detaches it, as everything fails on a machine without power. Without
// it Cut unmounts, and a goroutine that goes on using paths under the
// mount point after Cut reaches the bare mount point directory, where
// its writes succeed unnoticed. The FUSE server stops at Cut either way.
func WithDeadMountAfterCut() Option {
	return func(c *config) error {
		c.deadMount = true
		return nil
	}
}

const (
	stateMounted = iota
	stateCutting // Cut began: the file system refuses changes
	stateDead    // cut, the dead mount still attached (WithDeadMountAfterCut)
	stateClosed  // cut or unmounted
)

// FS is a mounted power cut file system. Its methods are safe for
// concurrent use.
type FS struct {
	backing    string
	mountpoint string
	cfg        config
	server     *fuse.Server
	served     chan struct{} // closed when the server's Serve returns

	life sync.Mutex // serializes Cut and Unmount

	mu        sync.Mutex
	state     int
	stashName string // hidden directory in backing, see stash
	stashFd   int    // O_PATH descriptor of the stash directory
	// files holds the unsynced data of files, by backing inode number.
	files map[uint64]*fileState
	// stashed counts, by inode number, the pending operations that need
	// the file's hard link in the stash (named fileStashName(ino)).
	stashed map[uint64]int
	// dirs are the directories that pending operations refer to.
	dirs map[uint64]*dirRef
	// ops are the pending directory operations, oldest first.
	ops []*dirOp
}

// Mount mounts at mountpoint a file system that passes through to the
// directory backing and tracks what is not durable. Both must exist, and
// neither may be inside the other. The caller must call Cut or Unmount.
func Mount(backing, mountpoint string, opts ...Option) (*FS, error) {
	var cfg config
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	var err error
	if backing, err = realDir(backing); err != nil {
		return nil, err
	}
	if mountpoint, err = realDir(mountpoint); err != nil {
		return nil, err
	}
	if within(backing, mountpoint) || within(mountpoint, backing) {
		return nil, fmt.Errorf("powercut: backing %s and mount point %s overlap", backing, mountpoint)
	}
	var st unix.Stat_t
	if err := unix.Stat(backing, &st); err != nil {
		return nil, fmt.Errorf("powercut: %w", err)
	}

	stash, err := os.MkdirTemp(backing, ".powercut-stash-")
	if err != nil {
		return nil, fmt.Errorf("powercut: creating stash: %w", err)
	}
	stashFd, err := unix.Open(stash, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(stash)
		return nil, fmt.Errorf("powercut: opening stash: %w", err)
	}
	p := &FS{
		backing:    backing,
		mountpoint: mountpoint,
		cfg:        cfg,
		served:     make(chan struct{}),
		stashName:  filepath.Base(stash),
		stashFd:    stashFd,
		files:      map[uint64]*fileState{},
		stashed:    map[uint64]int{},
		dirs:       map[uint64]*dirRef{},
	}

	root := &fs.LoopbackRoot{Path: backing, Dev: uint64(st.Dev)}
	rootNode := &node{LoopbackNode: &fs.LoopbackNode{RootData: root}, pfs: p}
	root.RootNode = rootNode

	// The kernel must ask for every entry and attribute, and never keep
	// a write to itself: no caching of entries or attributes, no
	// writeback cache (go-fuse does not ask for it) and no passthrough,
	// which would send reads and writes straight to the backing file.
	var zero time.Duration
	fsOpts := &fs.Options{
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			DirectMountStrict:    true,
			FsName:               backing,
			Name:                 "powercut",
			DisabledCapabilities: fuse.CAP_PASSTHROUGH | fuse.CAP_WRITEBACK_CACHE,
			// Replies to requests in flight fail once Cut aborted
			// the connection; that is expected, not worth a log line.
			Logger: log.New(logFilter{p}, "powercut: ", log.LstdFlags),
		},
	}
	server, err := fuse.NewServer(fs.NewNodeFS(rootNode, fsOpts), mountpoint, &fsOpts.MountOptions)
	if err != nil {
		p.cleanup()
		return nil, fmt.Errorf("powercut: mounting %s: %w", mountpoint, err)
	}
	p.server = server
	go func() {
		server.Serve()
		close(p.served)
	}()
	if err := server.WaitMount(); err != nil {
		p.forceUnmount()
		<-p.served
		p.cleanup()
		return nil, fmt.Errorf("powercut: mounting %s: %w", mountpoint, err)
	}
	return p, nil
}

// logFilter passes go-fuse's log to the standard logger's output while
// mounted, and drops it once Cut or Unmount began.
type logFilter struct{ p *FS }

func (l logFilter) Write(b []byte) (int, error) {
	l.p.mu.Lock()
	mounted := l.p.state == stateMounted
	l.p.mu.Unlock()
	if mounted {
		return log.Writer().Write(b)
	}
	return len(b), nil
}

func realDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return "", fmt.Errorf("powercut: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("powercut: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("powercut: %s is not a directory", dir)
	}
	return abs, nil
}

// within reports whether path is dir or below it.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// Mountpoint returns the directory the file system is mounted at.
func (p *FS) Mountpoint() string { return p.mountpoint }

// Backing returns the backing directory.
func (p *FS) Backing() string { return p.backing }

// Pending returns how many files have unsynced data and how many
// directories have unsynced entry changes.
func (p *FS) Pending() (files, dirs int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	need := map[uint64]bool{}
	for _, o := range p.ops {
		for d := range o.need {
			need[d] = true
		}
	}
	return len(p.files), len(need)
}

// Cut simulates a power cut: it unmounts the file system forcefully
// (open files stay open but every operation on them fails) and then
// discards from the backing directory everything that was not durable,
// as described in the package documentation. After Cut the file system
// is unusable, and the mount point is the directory it was before Mount
// (see WithDeadMountAfterCut for keeping it dead instead). Cut returns
// the errors it met while undoing, if any; it undoes all it can
// regardless.
func (p *FS) Cut() error {
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	if p.state != stateMounted {
		p.mu.Unlock()
		return ErrUnmounted
	}
	// From here every change through the mount fails, so nothing
	// reaches the backing directory after the power went.
	p.state = stateCutting
	p.mu.Unlock()

	var uerr error
	if p.cfg.deadMount {
		uerr = p.abort()
	} else {
		uerr = p.forceUnmount()
	}
	if uerr != nil {
		// The mount may still be there; undoing under it would race
		// with a server that still answers reads.
		return fmt.Errorf("powercut: cut: unmounting %s: %w", p.mountpoint, uerr)
	}
	<-p.served

	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.undo()
	p.cleanup()
	p.state = stateClosed
	if p.cfg.deadMount {
		p.state = stateDead
	}
	if err != nil {
		return fmt.Errorf("powercut: cut: %w", err)
	}
	return nil
}

// forceUnmount aborts the FUSE connection and detaches the mount even
// while files are open.
func (p *FS) forceUnmount() error {
	// For FUSE, MNT_FORCE aborts the connection (fuse_umount_begin): the
	// server's reads end and requests in flight fail. It then unmounts
	// unless the mount is busy, when a lazy unmount detaches it.
	err := unix.Unmount(p.mountpoint, unix.MNT_FORCE)
	if err == nil {
		return nil
	}
	if err2 := unix.Unmount(p.mountpoint, unix.MNT_DETACH); err2 != nil {
		return errors.Join(err, err2)
	}
	return nil
}

// abort aborts the FUSE connection but leaves the mount attached: every
// access through it fails from then on.
func (p *FS) abort() error {
	// MNT_FORCE aborts the connection, then fails with EBUSY while the
	// mount is in use: hold it in use.
	fd, err := unix.Open(p.mountpoint, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Unmount(p.mountpoint, unix.MNT_FORCE); err != nil && err != unix.EBUSY {
		return err
	}
	return nil
}

// Unmount unmounts the file system cleanly, like a clean shutdown:
// everything written stays in the backing directory as it is, synced or
// not. It fails, and the file system stays mounted, while files on it are
// open. After a Cut with WithDeadMountAfterCut, it detaches the dead
// mount (lazily, so open files do not stop it) and keeps nothing more:
// Cut already decided what stays.
func (p *FS) Unmount() error {
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	if p.state == stateDead {
		defer p.mu.Unlock()
		if err := unix.Unmount(p.mountpoint, unix.MNT_DETACH); err != nil && err != unix.EINVAL {
			return fmt.Errorf("powercut: detaching %s: %w", p.mountpoint, err)
		}
		p.state = stateClosed
		return nil
	}
	if p.state != stateMounted {
		p.mu.Unlock()
		return ErrUnmounted
	}
	p.mu.Unlock()
	// The server's Unmount retries for a while when the mount is busy.
	if err := p.server.Unmount(); err != nil {
		return fmt.Errorf("powercut: unmounting %s: %w", p.mountpoint, err)
	}
	<-p.served
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanup()
	p.state = stateClosed
	return nil
}
