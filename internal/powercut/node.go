package powercut

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is a loopback node whose changes are logged. Every change to the
// backing directory (and its logging) happens with pfs.mu held, so the
// log's order is the order of the changes.
type node struct {
	*fs.LoopbackNode
	pfs *FS
}

var (
	_ fs.NodeWrapChilder    = (*node)(nil)
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeMknoder        = (*node)(nil)
	_ fs.NodeSymlinker      = (*node)(nil)
	_ fs.NodeLinker         = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeStatxer        = (*node)(nil)
	_ fs.NodeFsyncer        = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeTmpfiler       = (*node)(nil)
	_ fs.NodeCopyFileRanger = (*node)(nil)
)

// WrapChild makes the loopback's new nodes ours.
func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), pfs: n.pfs}
}

// bpath is the node's path in the backing directory.
func (n *node) bpath() string {
	return filepath.Join(n.pfs.backing, n.Path(n.Root()))
}

// hidden reports whether name in n is the stash.
func (n *node) hidden(name string) bool {
	return n.IsRoot() && name == n.pfs.stashName
}

// begin locks the file system for a change of name in n; it fails once
// the power is cut. The caller must unlock p.mu when errno is 0.
func (n *node) begin(names ...string) syscall.Errno {
	p := n.pfs
	p.mu.Lock()
	if p.state != stateMounted {
		p.mu.Unlock()
		return syscall.EIO
	}
	for _, name := range names {
		if n.hidden(name) {
			p.mu.Unlock()
			return syscall.EPERM
		}
	}
	return 0
}

// fixNlink hides the stash's hard link from a file's link count. Called
// with p.mu held.
func (p *FS) fixNlink(ino uint64, mode uint32, nlink *uint32) {
	if mode&syscall.S_IFMT != syscall.S_IFDIR && p.stashed[ino] > 0 && *nlink > 0 {
		*nlink--
	}
}

func (p *FS) fixAttr(a *fuse.Attr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fixNlink(a.Ino, a.Mode, &a.Nlink)
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.hidden(name) {
		return nil, syscall.ENOENT
	}
	ch, errno := n.LoopbackNode.Lookup(ctx, name, out)
	if errno == 0 {
		n.pfs.fixAttr(&out.Attr)
	}
	return ch, errno
}

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	errno := n.LoopbackNode.Getattr(ctx, f, out)
	if errno == 0 {
		n.pfs.fixAttr(&out.Attr)
	}
	return errno
}

func (n *node) Statx(ctx context.Context, f fs.FileHandle, flags uint32, mask uint32, out *fuse.StatxOut) syscall.Errno {
	errno := n.LoopbackNode.Statx(ctx, f, flags, mask, out)
	if errno == 0 {
		p := n.pfs
		p.mu.Lock()
		p.fixNlink(out.Ino, uint32(out.Mode), &out.Nlink)
		p.mu.Unlock()
	}
	return errno
}

// Create creates a file, or opens it when it exists and O_EXCL is not
// set (another CREATE for the name may have come first).
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if errno := n.begin(name); errno != 0 {
		return nil, nil, 0, errno
	}
	p := n.pfs
	defer p.mu.Unlock()
	d, err := p.refDir(n.bpath())
	if err != nil {
		return nil, nil, 0, fs.ToErrno(err)
	}
	path := filepath.Join(n.bpath(), name)
	oflags := int(flags) &^ syscall.O_APPEND
	created := true
	fd, err := syscall.Open(path, oflags|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, mode&07777)
	if err == syscall.EEXIST && oflags&syscall.O_EXCL == 0 {
		created = false
		fd, err = syscall.Open(path, oflags&^(syscall.O_CREAT|syscall.O_TRUNC)|syscall.O_CLOEXEC, 0)
	}
	if err != nil {
		p.unrefDir(d)
		return nil, nil, 0, fs.ToErrno(err)
	}
	fail := func(errno syscall.Errno) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
		syscall.Close(fd)
		if created {
			syscall.Unlink(path)
		}
		p.unrefDir(d)
		return nil, nil, 0, errno
	}
	if created && os.Getuid() == 0 {
		if caller, ok := fuse.FromContext(ctx); ok {
			syscall.Lchown(path, int(caller.Uid), int(caller.Gid))
		}
	}
	h, errno := newFile(p, fs.NewLoopbackFileFromOS(os.NewFile(uintptr(fd), path)), fd)
	if errno != 0 {
		return fail(errno)
	}
	if !created && oflags&syscall.O_TRUNC != 0 {
		if errno := p.truncateLocked(h.ino, fd, 0); errno != 0 {
			h.lf.Release(ctx)
			p.unrefDir(d)
			return nil, nil, 0, errno
		}
	}
	ch, errno := n.LoopbackNode.Lookup(ctx, name, out)
	if errno != 0 {
		h.lf.Release(ctx)
		if created {
			syscall.Unlink(path)
		}
		p.unrefDir(d)
		return nil, nil, 0, errno
	}
	p.fixNlink(out.Attr.Ino, out.Attr.Mode, &out.Attr.Nlink)
	if created {
		p.addOp(&dirOp{kind: opCreate, d1: d, n1: name})
	} else {
		p.unrefDir(d)
	}
	return ch, h, 0, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	// Without CAP_ATOMIC_O_TRUNC, which go-fuse does not ask for, the
	// kernel truncates with SETATTR; take O_TRUNC here all the same.
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags&^syscall.O_TRUNC)
	if errno != 0 {
		return nil, 0, errno
	}
	lf := fh.(*fs.LoopbackFile)
	fd, _ := lf.PassthroughFd()
	h, errno := newFile(n.pfs, lf, fd)
	if errno != 0 {
		lf.Release(ctx)
		return nil, 0, errno
	}
	if flags&syscall.O_TRUNC != 0 {
		if errno := n.pfs.truncate(h.ino, fd, 0); errno != 0 {
			lf.Release(ctx)
			return nil, 0, errno
		}
	}
	return h, fuseFlags, 0
}

// created logs the creation of name in n by create, a loopback method.
func (n *node) created(name string, create func() (*fs.Inode, syscall.Errno), out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := n.begin(name); errno != 0 {
		return nil, errno
	}
	p := n.pfs
	defer p.mu.Unlock()
	d, err := p.refDir(n.bpath())
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	ch, errno := create()
	if errno != 0 {
		p.unrefDir(d)
		return nil, errno
	}
	p.fixNlink(out.Attr.Ino, out.Attr.Mode, &out.Attr.Nlink)
	p.addOp(&dirOp{kind: opCreate, d1: d, n1: name})
	return ch, 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.created(name, func() (*fs.Inode, syscall.Errno) {
		return n.LoopbackNode.Mkdir(ctx, name, mode, out)
	}, out)
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.created(name, func() (*fs.Inode, syscall.Errno) {
		return n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
	}, out)
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.created(name, func() (*fs.Inode, syscall.Errno) {
		return n.LoopbackNode.Symlink(ctx, target, name, out)
	}, out)
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	return n.created(name, func() (*fs.Inode, syscall.Errno) {
		return n.LoopbackNode.Link(ctx, t.LoopbackNode, name, out)
	}, out)
}

// Tmpfile refuses O_TMPFILE, which the model leaves out.
func (n *node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EOPNOTSUPP
}

// CopyFileRange refuses the offload; the kernel then copies with reads
// and writes, which are logged.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut uint64, len uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.EOPNOTSUPP
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, false)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, true)
}

// remove unlinks a file (dir false) or removes an empty directory (dir
// true), keeping what goes in the stash until the removal is durable.
func (n *node) remove(name string, dir bool) syscall.Errno {
	if errno := n.begin(name); errno != 0 {
		return errno
	}
	p := n.pfs
	defer p.mu.Unlock()
	path := filepath.Join(n.bpath(), name)
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return fs.ToErrno(err)
	}
	switch isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR; {
	case dir && !isDir:
		return syscall.ENOTDIR
	case !dir && isDir:
		return syscall.EISDIR
	}
	if dir {
		if empty, err := emptyDir(path); err != nil {
			return fs.ToErrno(err)
		} else if !empty {
			return syscall.ENOTEMPTY
		}
	}
	d, err := p.refDir(n.bpath())
	if err != nil {
		return fs.ToErrno(err)
	}
	op := &dirOp{kind: opUnlink, d1: d, n1: name, victim: st.Ino, vkind: victimFile}
	if dir {
		// The directory itself moves into the stash: that removes it.
		op.kind, op.vkind = opRmdir, victimDir
		err = p.stashDir(st.Ino, path)
	} else if err = p.stashFile(st.Ino, path); err == nil {
		if err = syscall.Unlink(path); err != nil {
			p.unstashFile(st.Ino)
		}
	}
	if err != nil {
		p.unrefDir(d)
		return fs.ToErrno(err)
	}
	p.addOp(op)
	return 0
}

// emptyDir reports whether the directory at path has no entries.
func emptyDir(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return false, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return true, nil
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok || np.pfs != n.pfs {
		return syscall.EXDEV
	}
	if flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		return syscall.EINVAL
	}
	if errno := n.begin(name); errno != 0 {
		return errno
	}
	p := n.pfs
	defer p.mu.Unlock()
	if np.hidden(newName) {
		return syscall.EPERM
	}
	p1 := filepath.Join(n.bpath(), name)
	p2 := filepath.Join(np.bpath(), newName)
	var st1, st2 unix.Stat_t
	if err := unix.Lstat(p1, &st1); err != nil {
		return fs.ToErrno(err)
	}
	err2 := unix.Lstat(p2, &st2)
	if err2 != nil && err2 != unix.ENOENT {
		return fs.ToErrno(err2)
	}
	exists := err2 == nil
	if exists && st1.Ino == st2.Ino {
		// The same file (or two links to it): rename does nothing.
		return fs.ToErrno(unix.Renameat2(unix.AT_FDCWD, p1, unix.AT_FDCWD, p2, uint(flags)))
	}
	d1, err := p.refDir(n.bpath())
	if err != nil {
		return fs.ToErrno(err)
	}
	d2, err := p.refDir(np.bpath())
	if err != nil {
		p.unrefDir(d1)
		return fs.ToErrno(err)
	}
	fail := func(err error) syscall.Errno {
		p.unrefDir(d1)
		p.unrefDir(d2)
		return fs.ToErrno(err)
	}
	op := &dirOp{kind: opRename, d1: d1, n1: name, d2: d2, n2: newName}
	isDir := func(st *unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFDIR }
	switch {
	case flags&unix.RENAME_EXCHANGE != 0:
		if err := unix.Renameat2(unix.AT_FDCWD, p1, unix.AT_FDCWD, p2, unix.RENAME_EXCHANGE); err != nil {
			return fail(err)
		}
		op.kind = opExchange
	case !exists:
		if err := unix.Renameat2(unix.AT_FDCWD, p1, unix.AT_FDCWD, p2, uint(flags)); err != nil {
			return fail(err)
		}
	case flags&unix.RENAME_NOREPLACE != 0:
		return fail(unix.EEXIST)
	case isDir(&st2):
		// The victim is an empty directory: move it to the stash
		// first, so that it keeps its inode, then rename.
		if !isDir(&st1) {
			return fail(unix.EISDIR)
		}
		if empty, err := emptyDir(p2); err != nil {
			return fail(err)
		} else if !empty {
			return fail(unix.ENOTEMPTY)
		}
		if err := p.stashDir(st2.Ino, p2); err != nil {
			return fail(err)
		}
		if err := unix.Rename(p1, p2); err != nil {
			unix.Renameat(p.stashFd, dirStashName(st2.Ino), unix.AT_FDCWD, p2)
			return fail(err)
		}
		op.victim, op.vkind = st2.Ino, victimDir
	default:
		if isDir(&st1) {
			return fail(unix.ENOTDIR)
		}
		if err := p.stashFile(st2.Ino, p2); err != nil {
			return fail(err)
		}
		if err := unix.Rename(p1, p2); err != nil {
			p.unstashFile(st2.Ino)
			return fail(err)
		}
		op.victim, op.vkind = st2.Ino, victimFile
	}
	p.addOp(op)
	return 0
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	h, _ := f.(*file)
	if size, ok := in.GetSize(); ok {
		var errno syscall.Errno
		if h != nil {
			errno = n.pfs.truncate(h.ino, h.fd, int64(size))
		} else {
			errno = n.truncatePath(int64(size))
		}
		if errno != 0 {
			return errno
		}
		in.Valid &^= fuse.FATTR_SIZE
	}
	var inner fs.FileHandle
	if h != nil {
		inner = h.lf
	}
	errno := n.LoopbackNode.Setattr(ctx, inner, in, out)
	if errno == 0 {
		n.pfs.fixAttr(&out.Attr)
	}
	return errno
}

func (n *node) truncatePath(size int64) syscall.Errno {
	fd, err := syscall.Open(n.bpath(), syscall.O_WRONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fs.ToErrno(err)
	}
	defer syscall.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fs.ToErrno(err)
	}
	return n.pfs.truncate(st.Ino, fd, size)
}

// Fsync makes a file's data durable or, for a directory (when the
// kernel does not send the fsync to the directory handle), its entries.
func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	p := n.pfs
	if h, ok := f.(*dirHandle); ok {
		return h.Fsyncdir(ctx, flags)
	}
	h, ok := f.(*file)
	if !ok {
		var st unix.Stat_t
		if err := unix.Lstat(n.bpath(), &st); err != nil {
			return fs.ToErrno(err)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.state != stateMounted {
			return syscall.EIO
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			p.syncDir(st.Ino)
		} else {
			p.syncData(st.Ino)
		}
		return 0
	}
	// The real fsync first, so that a failure leaves the data unsynced.
	if err := unix.Fsync(h.fd); err != nil {
		return fs.ToErrno(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != stateMounted {
		return syscall.EIO
	}
	p.syncData(h.ino)
	return 0
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	var st unix.Stat_t
	if err := unix.Stat(n.bpath(), &st); err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	ds, errno := fs.NewLoopbackDirStream(n.bpath())
	if errno != 0 {
		return nil, 0, errno
	}
	h := &dirHandle{pfs: n.pfs, ds: ds, ino: st.Ino}
	if n.IsRoot() {
		h.hide = n.pfs.stashName
	}
	return h, 0, 0
}

// dirHandle is an open directory: it hides the stash and logs fsyncs.
type dirHandle struct {
	pfs  *FS
	ds   fs.DirStream
	ino  uint64
	hide string
}

var (
	_ fs.FileReaddirenter = (*dirHandle)(nil)
	_ fs.FileSeekdirer    = (*dirHandle)(nil)
	_ fs.FileReleasedirer = (*dirHandle)(nil)
	_ fs.FileFsyncdirer   = (*dirHandle)(nil)
)

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	for {
		de, errno := h.ds.(fs.FileReaddirenter).Readdirent(ctx)
		if errno != 0 || de == nil || h.hide == "" || de.Name != h.hide {
			return de, errno
		}
	}
}

func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	return h.ds.(fs.FileSeekdirer).Seekdir(ctx, off)
}

func (h *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	h.ds.(fs.FileReleasedirer).Releasedir(ctx, flags)
}

func (h *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	if errno := h.ds.(fs.FileFsyncdirer).Fsyncdir(ctx, flags); errno != 0 {
		return errno
	}
	p := h.pfs
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != stateMounted {
		return syscall.EIO
	}
	p.syncDir(h.ino)
	return 0
}

// file is an open file. It wraps a loopback file without offering the
// kernel passthrough, ioctls or an fsync of its own (the node's Fsync
// takes fsyncs).
type file struct {
	pfs *FS
	lf  *fs.LoopbackFile
	fd  int
	ino uint64
}

var (
	_ fs.FileReader    = (*file)(nil)
	_ fs.FileWriter    = (*file)(nil)
	_ fs.FileWritever  = (*file)(nil)
	_ fs.FileReleaser  = (*file)(nil)
	_ fs.FileFlusher   = (*file)(nil)
	_ fs.FileGetattrer = (*file)(nil)
	_ fs.FileStatxer   = (*file)(nil)
	_ fs.FileLseeker   = (*file)(nil)
	_ fs.FileAllocater = (*file)(nil)
)

func newFile(p *FS, lf *fs.LoopbackFile, fd int) (*file, syscall.Errno) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fs.ToErrno(err)
	}
	return &file{pfs: p, lf: lf, fd: fd, ino: st.Ino}, 0
}

func (f *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return f.lf.Read(ctx, buf, off)
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	return f.pfs.write(f, data, off)
}

func (f *file) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	var all []byte
	for _, d := range data {
		all = append(all, d...)
	}
	return f.pfs.write(f, all, off)
}

func (f *file) Release(ctx context.Context) syscall.Errno { return f.lf.Release(ctx) }

func (f *file) Flush(ctx context.Context) syscall.Errno { return f.lf.Flush(ctx) }

func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return f.lf.Getattr(ctx, out)
}

func (f *file) Statx(ctx context.Context, flags uint32, mask uint32, out *fuse.StatxOut) syscall.Errno {
	return f.lf.Statx(ctx, flags, mask, out)
}

func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return f.lf.Lseek(ctx, off, whence)
}

func (f *file) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	p := f.pfs
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != stateMounted {
		return syscall.EIO
	}
	s, err := p.trackFile(f.ino, f.fd)
	if err != nil {
		return fs.ToErrno(err)
	}
	start, end := int64(off), int64(off+size)
	switch mode &^ unix.FALLOC_FL_KEEP_SIZE {
	case 0:
		// Allocates: the content does not change, the size may.
		end = start
	case unix.FALLOC_FL_PUNCH_HOLE, unix.FALLOC_FL_ZERO_RANGE:
	default:
		// Collapse or insert a range: everything after off moves.
		end = maxOff
	}
	if err := s.preserve(start, end); err != nil {
		return fs.ToErrno(err)
	}
	if errno := f.lf.Allocate(ctx, off, size, mode); errno != 0 {
		return errno
	}
	if p.cfg.unit > 0 {
		s.log = append(s.log, dataOp{kind: dataAllocate, off: int64(off), size: int64(size), mode: mode})
	}
	return 0
}

// write writes data at off in f's file, keeping what it overwrites.
func (p *FS) write(f *file, data []byte, off int64) (uint32, syscall.Errno) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != stateMounted {
		return 0, syscall.EIO
	}
	s, err := p.trackFile(f.ino, f.fd)
	if err != nil {
		return 0, fs.ToErrno(err)
	}
	if err := s.preserve(off, off+int64(len(data))); err != nil {
		return 0, fs.ToErrno(err)
	}
	n, err := unix.Pwrite(f.fd, data, off)
	if n > 0 && p.cfg.unit > 0 {
		s.log = append(s.log, dataOp{kind: dataWrite, off: off, data: append([]byte(nil), data[:n]...)})
	}
	if err != nil {
		return uint32(max(n, 0)), fs.ToErrno(err)
	}
	return uint32(n), 0
}

// truncate sets the size of the file with inode ino, open at fd.
func (p *FS) truncate(ino uint64, fd int, size int64) syscall.Errno {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != stateMounted {
		return syscall.EIO
	}
	return p.truncateLocked(ino, fd, size)
}

func (p *FS) truncateLocked(ino uint64, fd int, size int64) syscall.Errno {
	s, err := p.trackFile(ino, fd)
	if err != nil {
		return fs.ToErrno(err)
	}
	if err := s.preserve(size, maxOff); err != nil {
		return fs.ToErrno(err)
	}
	if err := unix.Ftruncate(fd, size); err != nil {
		return fs.ToErrno(err)
	}
	if p.cfg.unit > 0 {
		s.log = append(s.log, dataOp{kind: dataTruncate, size: size})
	}
	return 0
}
