package powercut

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// All the methods here are called with p.mu held.

// fileState is the unsynced data of one file (one inode).
type fileState struct {
	// f is the file opened read-write. It reads pre-images, writes them
	// back at a cut, and keeps the inode alive, so its number is not
	// reused while the state refers to it.
	f *os.File
	// origSize is the size at the last fsync (or at mount).
	origSize int64
	// pre holds the bytes of [0, origSize) as they were at the last
	// fsync, for the ranges changed since, sorted by offset and not
	// overlapping. A byte of [0, origSize) outside them is unchanged.
	pre []extent
	// log is the changes since the last fsync, in order; kept only for
	// torn writes.
	log []dataOp
}

type extent struct {
	off  int64
	data []byte
}

type dataKind int

const (
	dataWrite dataKind = iota
	dataTruncate
	dataAllocate
)

type dataOp struct {
	kind dataKind
	off  int64
	data []byte // dataWrite
	size int64  // dataTruncate: the new size; dataAllocate: the length
	mode uint32 // dataAllocate
}

// trackFile returns the state of the file with inode ino, open at fd,
// starting to track it if its data is clean.
func (p *FS) trackFile(ino uint64, fd int) (*fileState, error) {
	if s := p.files[ino]; s != nil {
		return s, nil
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, err
	}
	if st.Ino != ino {
		f.Close()
		return nil, fmt.Errorf("reopened inode %d, want %d", st.Ino, ino)
	}
	s := &fileState{f: f, origSize: st.Size}
	p.files[ino] = s
	return s, nil
}

// syncData makes the data of the file with inode ino durable.
func (p *FS) syncData(ino uint64) {
	if s := p.files[ino]; s != nil {
		s.f.Close()
		delete(p.files, ino)
	}
}

// preserve saves the synced content of [a, b) before it changes.
func (s *fileState) preserve(a, b int64) error {
	b = min(b, s.origSize)
	if a >= b {
		return nil
	}
	var gaps []extent
	cur := a
	for _, e := range s.pre {
		end := e.off + int64(len(e.data))
		if end <= cur {
			continue
		}
		if e.off >= b {
			break
		}
		if e.off > cur {
			gaps = append(gaps, extent{off: cur, data: make([]byte, e.off-cur)})
		}
		cur = end
		if cur >= b {
			break
		}
	}
	if cur < b {
		gaps = append(gaps, extent{off: cur, data: make([]byte, b-cur)})
	}
	for _, g := range gaps {
		n, err := s.f.ReadAt(g.data, g.off)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if n < len(g.data) {
			// Cannot happen: [0, origSize) is in the file unless a
			// truncate, which preserved what it cut, shortened it.
			return fmt.Errorf("pre-image of [%d, %d): read %d bytes", g.off, g.off+int64(len(g.data)), n)
		}
		s.pre = append(s.pre, g)
	}
	slices.SortFunc(s.pre, func(x, y extent) int {
		switch {
		case x.off < y.off:
			return -1
		case x.off > y.off:
			return 1
		}
		return 0
	})
	return nil
}

// revert puts the file back as it was at its last fsync.
func (s *fileState) revert() error {
	if err := s.f.Truncate(s.origSize); err != nil {
		return err
	}
	for _, e := range s.pre {
		if _, err := s.f.WriteAt(e.data, e.off); err != nil {
			return err
		}
	}
	return nil
}

// pieces splits the log into the units that a torn write keeps or drops
// whole: writes at file offsets that are multiples of unit, truncates and
// allocations whole.
func (s *fileState) pieces(unit int64) []dataOp {
	var ps []dataOp
	for _, op := range s.log {
		if op.kind != dataWrite {
			ps = append(ps, op)
			continue
		}
		off, data := op.off, op.data
		for len(data) > 0 {
			n := min(int64(len(data)), (off/unit+1)*unit-off)
			ps = append(ps, dataOp{kind: dataWrite, off: off, data: data[:n]})
			off, data = off+n, data[n:]
		}
	}
	return ps
}

func (s *fileState) apply(op dataOp) error {
	switch op.kind {
	case dataWrite:
		_, err := s.f.WriteAt(op.data, op.off)
		return err
	case dataTruncate:
		return s.f.Truncate(op.size)
	default:
		return unix.Fallocate(int(s.f.Fd()), op.mode, op.off, op.size)
	}
}

// dirRef is a directory that pending operations refer to. The O_PATH
// descriptor follows it through renames and keeps its inode number from
// being reused.
type dirRef struct {
	ino  uint64
	fd   int
	refs int
}

// refDir returns a reference to the backing directory at path.
func (p *FS) refDir(path string) (*dirRef, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if d := p.dirs[st.Ino]; d != nil {
		unix.Close(fd)
		d.refs++
		return d, nil
	}
	d := &dirRef{ino: st.Ino, fd: fd, refs: 1}
	p.dirs[st.Ino] = d
	return d, nil
}

func (p *FS) unrefDir(d *dirRef) {
	if d == nil {
		return
	}
	d.refs--
	if d.refs == 0 {
		unix.Close(d.fd)
		delete(p.dirs, d.ino)
	}
}

// deleted reports whether directory d no longer has a name.
func deleted(d *dirRef) bool {
	var st unix.Stat_t
	return unix.Fstat(d.fd, &st) == nil && st.Nlink == 0
}

func fileStashName(ino uint64) string { return fmt.Sprintf("f%d", ino) }
func dirStashName(ino uint64) string  { return fmt.Sprintf("d%d", ino) }

// stashFile keeps a hard link in the stash to the file with inode ino at
// path, so that an unlink or an overwriting rename can be undone.
func (p *FS) stashFile(ino uint64, path string) error {
	if p.stashed[ino] == 0 {
		if err := unix.Linkat(unix.AT_FDCWD, path, p.stashFd, fileStashName(ino), 0); err != nil {
			return err
		}
	}
	p.stashed[ino]++
	return nil
}

func (p *FS) unstashFile(ino uint64) {
	p.stashed[ino]--
	if p.stashed[ino] <= 0 {
		delete(p.stashed, ino)
		unix.Unlinkat(p.stashFd, fileStashName(ino), 0)
	}
}

// stashDir moves the directory at path, with inode ino, into the stash
// (instead of removing it), so that its removal can be undone with the
// same inode, which pending operations may refer to.
func (p *FS) stashDir(ino uint64, path string) error {
	return unix.Renameat(unix.AT_FDCWD, path, p.stashFd, dirStashName(ino))
}

type opKind int

const (
	opCreate   opKind = iota // n1 was created in d1
	opUnlink                 // n1 (the file victim) was unlinked from d1
	opRmdir                  // n1 (the directory victim) was removed from d1
	opRename                 // d1/n1 was renamed to d2/n2, replacing victim if any
	opExchange               // d1/n1 and d2/n2 were exchanged
)

type victimKind int

const (
	victimNone victimKind = iota
	victimFile            // in the stash as fileStashName(victim)
	victimDir             // in the stash as dirStashName(victim)
)

// dirOp is a pending directory operation. It holds references to its
// directories and to its victim in the stash until it is durable.
type dirOp struct {
	kind   opKind
	need   map[uint64]bool // the directories not synced since
	d1, d2 *dirRef
	n1, n2 string
	victim uint64
	vkind  victimKind
}

// entry is a name in a directory.
type entry struct {
	dir  uint64
	name string
}

func (o *dirOp) entries() []entry {
	e := []entry{{o.d1.ino, o.n1}}
	if o.d2 != nil {
		e = append(e, entry{o.d2.ino, o.n2})
	}
	return e
}

// addOp logs o, which takes over its references.
func (p *FS) addOp(o *dirOp) {
	o.need = map[uint64]bool{o.d1.ino: true}
	if o.d2 != nil {
		o.need[o.d2.ino] = true
	}
	p.ops = append(p.ops, o)
}

// syncDir makes the entry changes of the directory with inode ino
// durable.
func (p *FS) syncDir(ino uint64) {
	changed := false
	for _, o := range p.ops {
		if o.need[ino] {
			delete(o.need, ino)
			changed = true
		}
	}
	if changed {
		p.settle()
	}
}

// settle drops the operations that are durable: those whose directories
// have all been synced since, and, as a journal would commit them, those
// that touched a name that a later durable operation touched too. Undoing
// the rest, newest first, then gives each of their names back the value
// it had before them.
func (p *FS) settle() {
	durable := make([]bool, len(p.ops))
	forced := map[entry]bool{}
	for i := len(p.ops) - 1; i >= 0; i-- {
		o := p.ops[i]
		d := len(o.need) == 0
		for _, e := range o.entries() {
			d = d || forced[e]
		}
		if d {
			durable[i] = true
			for _, e := range o.entries() {
				forced[e] = true
			}
		}
	}
	kept := p.ops[:0]
	for i, o := range p.ops {
		if durable[i] {
			p.release(o)
		} else {
			kept = append(kept, o)
		}
	}
	clear(p.ops[len(kept):])
	p.ops = kept
}

// release drops the references of a durable operation.
func (p *FS) release(o *dirOp) {
	switch o.vkind {
	case victimFile:
		p.unstashFile(o.victim)
	case victimDir:
		// Empty: nothing can enter a removed directory.
		unix.Unlinkat(p.stashFd, dirStashName(o.victim), unix.AT_REMOVEDIR)
	}
	p.unrefDir(o.d1)
	p.unrefDir(o.d2)
}

// undo throws away everything that is not durable. The file system is
// unmounted.
func (p *FS) undo() error {
	var errs []error
	inos := make([]uint64, 0, len(p.files))
	for ino := range p.files {
		inos = append(inos, ino)
	}
	slices.Sort(inos)
	for _, ino := range inos {
		s := p.files[ino]
		err := s.revert()
		if err == nil && p.cfg.unit > 0 {
			ps := s.pieces(int64(p.cfg.unit))
			keep := p.cfg.rnd.IntN(len(ps) + 1)
			for _, op := range ps[:keep] {
				if err = s.apply(op); err != nil {
					break
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("reverting data of inode %d: %w", ino, err))
		}
	}
	for i := len(p.ops) - 1; i >= 0; i-- {
		if err := p.undoOp(p.ops[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p *FS) undoOp(o *dirOp) error {
	var err error
	switch o.kind {
	case opCreate:
		err = p.removeEntry(o.d1, o.n1)
	case opUnlink, opRmdir:
		err = p.restoreVictim(o, o.d1, o.n1)
	case opRename:
		if deleted(o.d1) {
			// The old name's directory is durably gone: the file is
			// at neither name.
			err = p.removeEntry(o.d2, o.n2)
		} else {
			err = unix.Renameat(o.d2.fd, o.n2, o.d1.fd, o.n1)
		}
		if err == nil && o.vkind != victimNone {
			err = p.restoreVictim(o, o.d2, o.n2)
		}
	case opExchange:
		err = unix.Renameat2(o.d1.fd, o.n1, o.d2.fd, o.n2, unix.RENAME_EXCHANGE)
	}
	if err != nil && (deleted(o.d1) || o.d2 != nil && deleted(o.d2)) {
		// What was in a directory that is durably removed is lost
		// with it.
		return nil
	}
	if err != nil {
		return fmt.Errorf("undoing %s: %w", o.describe(), err)
	}
	return nil
}

func (o *dirOp) describe() string {
	switch o.kind {
	case opCreate:
		return fmt.Sprintf("creation of %q", o.n1)
	case opUnlink:
		return fmt.Sprintf("unlink of %q", o.n1)
	case opRmdir:
		return fmt.Sprintf("rmdir of %q", o.n1)
	case opRename:
		return fmt.Sprintf("rename of %q to %q", o.n1, o.n2)
	default:
		return fmt.Sprintf("exchange of %q and %q", o.n1, o.n2)
	}
}

func (p *FS) restoreVictim(o *dirOp, d *dirRef, name string) error {
	if o.vkind == victimDir {
		return unix.Renameat(p.stashFd, dirStashName(o.victim), d.fd, name)
	}
	return unix.Linkat(p.stashFd, fileStashName(o.victim), d.fd, name, 0)
}

// removeEntry removes name from d, recursively for a directory.
func (p *FS) removeEntry(d *dirRef, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.Unlinkat(d.fd, name, 0)
	}
	dir, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", d.fd))
	if err != nil {
		return err
	}
	return os.RemoveAll(filepath.Join(dir, name))
}

// cleanup closes all descriptors and removes the stash.
func (p *FS) cleanup() {
	for _, s := range p.files {
		s.f.Close()
	}
	for _, d := range p.dirs {
		unix.Close(d.fd)
	}
	p.files, p.dirs, p.stashed, p.ops = nil, nil, nil, nil
	if p.stashFd >= 0 {
		unix.Close(p.stashFd)
		p.stashFd = -1
	}
	os.RemoveAll(filepath.Join(p.backing, p.stashName))
}

// maxOff stands for "to the end of the file" in preserve.
const maxOff = math.MaxInt64
