package attach

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/srvlab/rds-csi/internal/durable"
)

// FileOption configures a FileStore.
type FileOption func(*fileOptions)

type fileOptions struct {
	groupCommit     bool
	compactRatio    int64
	compactMinBytes int64
	truncateCorrupt bool
	logger          *slog.Logger
}

// WithGroupCommit turns group commit on (the default) or off. With it on,
// writes that arrive while a sync runs share the next sync; off, every
// write gets its own, which is much slower under concurrency.
func WithGroupCommit(on bool) FileOption {
	return func(o *fileOptions) { o.groupCommit = on }
}

// WithCompaction sets when the log is rewritten to hold only the live
// state: once it is larger than ratio times the live state and larger than
// minBytes. The defaults are 4 and 4 MiB. A ratio below 2 is taken as 2.
func WithCompaction(ratio int, minBytes int64) FileOption {
	return func(o *fileOptions) {
		o.compactRatio = int64(max(ratio, 2))
		o.compactMinBytes = max(minBytes, 0)
	}
}

// WithFileLogger sets the FileStore's logger. The default discards
// everything.
func WithFileLogger(l *slog.Logger) FileOption {
	return func(o *fileOptions) { o.logger = l }
}

// WithTruncateAtCorruption is for recovering a log that NewFileStore
// refused with ErrCorrupt: the log is cut at the first damaged record, as
// a torn tail would be, keeping the records before it and dropping every
// record after it, valid or not. What is dropped is logged at Error. Use it
// for one open, after deciding that losing those records is acceptable.
func WithTruncateAtCorruption() FileOption {
	return func(o *fileOptions) { o.truncateCorrupt = true }
}

// FileStore is the default Store: an append-only log in one file, with a
// checksum and length on every record.
//
// On open, a damaged record (cut short, failing its checksum or not
// parsing) ends the log that is loaded. With nothing valid after it, it is
// a torn tail from a crash mid-append and is cut off. With valid records
// after it, it is cut off with them only if it is a torn write: a
// file-aligned 512-byte sector between it and the next valid record is all
// zeros, as when a crash left a page of the last, unsynced batch unwritten
// while a later one reached the disk; those records were never
// acknowledged. Any other damage followed by valid records is corruption
// of durable, acknowledged attachments (bit rot, a bad sector, a stray
// write): NewFileStore fails with an error wrapping ErrCorrupt and leaves
// the file as it is, since dropping an attachment could let a volume be
// published to a second node. There are two ways out: open the log once
// with WithTruncateAtCorruption, which keeps the records before the
// damage; or move the file aside, start with an empty log and rebuild the
// state with Manager.Replace from the orchestrator's records before
// serving (in Kubernetes the external-attacher also publishes again the
// VolumeAttachments it finds missing from ListVolumes' published nodes).
//
// The log is compacted by writing the live state to a temporary file,
// syncing it and renaming it over the log. A lock file (path + ".lock",
// flock) keeps a second FileStore, in this process or another, from
// opening the same log.
//
// With group commit (the default) a committer goroutine syncs concurrent
// writes together; Close stops it. Every method returns only after its
// change is durable.
type FileStore struct {
	path string
	opts fileOptions
	lock *os.File

	// mu guards the batch being filled and closed.
	mu     sync.Mutex
	cur    *batch
	closed bool
	wake   chan struct{}
	quit   chan struct{}
	exited chan struct{}

	// fileMu guards the file, its size and failure; held while writing.
	fileMu     sync.Mutex
	f          *os.File
	size       int64
	failed     error
	fileClosed bool

	// stateMu guards the live state, updated after each durable write.
	stateMu sync.RWMutex
	state   logState

	records, syncs, compactions atomic.Int64
}

// FileStats counts a FileStore's work since it was opened.
type FileStats struct {
	// Records is the number of records appended (one per Put or Delete).
	Records int64
	// Syncs is the number of appends made durable with one fsync each;
	// Records/Syncs is the group-commit batch size.
	Syncs int64
	// Compactions counts log rewrites, Replace included.
	Compactions int64
}

// Stats returns the store's counters.
func (s *FileStore) Stats() FileStats {
	return FileStats{Records: s.records.Load(), Syncs: s.syncs.Load(), Compactions: s.compactions.Load()}
}

var _ Store = (*FileStore)(nil)

// batch is a group of records written and synced together.
type batch struct {
	buf  []byte
	ops  []op
	done chan struct{}
	err  error
}

// op is one record of a batch, applied to the live state once durable.
type op struct {
	volumeID string
	put      *Attachment // nil for a delete; never changed once queued
}

// NewFileStore opens or creates the log at path; its directory must
// exist. It fails with an error wrapping ErrLocked when another FileStore
// holds the log, and with one wrapping ErrCorrupt when damage sits before
// valid records (see FileStore); either way the lock is released.
func NewFileStore(path string, opts ...FileOption) (*FileStore, error) {
	o := fileOptions{groupCommit: true, compactRatio: 4, compactMinBytes: 4 << 20}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	s := &FileStore{
		path: path,
		opts: o,
	}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	s.lock = lock
	if err := s.open(); err != nil {
		unlockFile(lock)
		return nil, err
	}
	if o.groupCommit {
		s.cur = &batch{done: make(chan struct{})}
		s.wake = make(chan struct{}, 1)
		s.quit = make(chan struct{})
		s.exited = make(chan struct{})
		go s.commitLoop()
	}
	return s, nil
}

// open reads the log, replays it and cuts off a bad tail.
func (s *FileStore) open() error {
	if err := os.Remove(s.tmpPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("attach: remove stale %s: %w", s.tmpPath(), err)
	}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("attach: open store: %w", err)
	}
	data, err := readAll(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("attach: read store %s: %w", s.path, err)
	}
	if len(data) < len(fileMagic) {
		// New, or a crash cut the magic short: nothing was ever stored.
		if !bytes.HasPrefix([]byte(fileMagic), data) {
			f.Close()
			return fmt.Errorf("attach: %s is not an attachment log", s.path)
		}
		if err := s.initFile(f); err != nil {
			f.Close()
			return err
		}
		s.state.vols = map[string]*Attachment{}
		s.f, s.size = f, int64(len(fileMagic))
		return nil
	}
	if string(data[:len(fileMagic)]) != fileMagic {
		f.Close()
		return fmt.Errorf("attach: %s is not an attachment log", s.path)
	}
	// Sized for a log of mostly live records, to avoid rehashing.
	s.state.vols = make(map[string]*Attachment, len(data)/64)
	body := data[len(fileMagic):]
	dec := newLogDecoder(body)
	valid := dec.replay(0, &s.state)
	if valid < len(body) {
		if err := s.cutDamage(f, dec.inspect(valid, len(fileMagic), scanBudget), int64(len(data))); err != nil {
			f.Close()
			return err
		}
	}
	s.f, s.size = f, int64(len(fileMagic)+valid)
	return nil
}

// cutDamage truncates the log at the damage dm describes, or, when that
// would drop durable records and WithTruncateAtCorruption is not set,
// returns an error wrapping ErrCorrupt without touching the file.
func (s *FileStore) cutDamage(f *os.File, dm damage, size int64) error {
	base := int64(len(fileMagic))
	at := base + int64(dm.bad)
	switch {
	case dm.next < 0 && dm.gaveUp < 0:
		s.opts.logger.Warn("attach: dropping torn or corrupt log tail", "path", s.path,
			"offset", at, "bytes", size-at)
	case dm.torn():
		s.opts.logger.Warn("attach: dropping torn last batch: a sector was never written, so its records were never acknowledged",
			"path", s.path, "offset", at, "bytes", size-at, "zero_sector", base+int64(dm.zeroSector),
			"next_valid", base+int64(dm.next), "valid_records_dropped", dm.records)
	default:
		if !s.opts.truncateCorrupt {
			return s.corruptError(dm)
		}
		s.opts.logger.Error("attach: truncating corrupt log as asked: valid records after the damage are lost",
			"path", s.path, "offset", at, "bytes", size-at, "valid_records_dropped", dm.records,
			"damage", dm.String()+"; the log is cut at the damaged record")
	}
	if err := f.Truncate(at); err != nil {
		return fmt.Errorf("attach: truncate %s at %d: %w", s.path, at, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("attach: sync %s: %w", s.path, err)
	}
	return nil
}

// corruptError is the error of an open refused for dm: the file is not
// touched.
func (s *FileStore) corruptError(dm damage) error {
	return fmt.Errorf("attach: %s: %s; file left as it is: %w", s.path, dm, ErrCorrupt)
}

// String says where the damage is and what follows it, in file offsets.
func (dm damage) String() string {
	base := len(fileMagic)
	if dm.next < 0 {
		return fmt.Sprintf("record at offset %d is damaged and the search for valid records after it gave up at offset %d",
			base+dm.bad, base+dm.gaveUp)
	}
	count := fmt.Sprint(dm.records)
	if dm.gaveUp >= 0 {
		count = "at least " + count
	}
	return fmt.Sprintf("record at offset %d is damaged but %s valid records follow from offset %d",
		base+dm.bad, count, base+dm.next)
}

func readAll(f *os.File) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	data := make([]byte, fi.Size())
	n, err := io.ReadFull(f, data)
	if err == io.ErrUnexpectedEOF {
		err = nil
	}
	return data[:n], err
}

func (s *FileStore) initFile(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("attach: init %s: %w", s.path, err)
	}
	if _, err := f.WriteAt([]byte(fileMagic), 0); err != nil {
		return fmt.Errorf("attach: init %s: %w", s.path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("attach: sync %s: %w", s.path, err)
	}
	if err := durable.SyncDir(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("attach: init %s: %w", s.path, err)
	}
	return nil
}

func (s *FileStore) tmpPath() string { return s.path + ".tmp" }

// Load returns copies of every stored Attachment.
func (s *FileStore) Load(ctx context.Context) ([]Attachment, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	s.stateMu.RLock()
	defer s.stateMu.RUnlock()
	total := 0
	for _, a := range s.state.vols {
		total += len(a.Nodes)
	}
	nodes := make([]string, 0, total)
	out := make([]Attachment, 0, len(s.state.vols))
	for _, p := range s.state.vols {
		a := *p
		start := len(nodes)
		nodes = append(nodes, a.Nodes...)
		if a.Nodes != nil {
			a.Nodes = nodes[start:len(nodes):len(nodes)]
		}
		out = append(out, a)
	}
	return out, nil
}

// Put stores a. The context is checked before the write starts; once the
// record is queued, Put waits for the sync so that the caller never
// mistakes a durable write for a failed one.
func (s *FileStore) Put(ctx context.Context, a Attachment) error {
	if a.VolumeID == "" {
		return fmt.Errorf("attach: put: empty volume ID: %w", ErrInvalid)
	}
	a = cloneAttachment(a)
	return s.write(ctx, op{volumeID: a.VolumeID, put: &a},
		func(dst []byte) ([]byte, error) { return appendPut(dst, &a) })
}

// Delete removes volumeID; see Put for how ctx is used.
func (s *FileStore) Delete(ctx context.Context, volumeID string) error {
	return s.write(ctx, op{volumeID: volumeID},
		func(dst []byte) ([]byte, error) { return appendDelete(dst, volumeID) })
}

func (s *FileStore) write(ctx context.Context, o op, encode func([]byte) ([]byte, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !s.opts.groupCommit {
		buf, err := encode(nil)
		if err != nil {
			return err
		}
		s.fileMu.Lock()
		defer s.fileMu.Unlock()
		if s.fileClosed {
			return ErrClosed
		}
		if err := s.commitLocked(&batch{buf: buf, ops: []op{o}}); err != nil {
			return err
		}
		s.maybeCompactLocked()
		return nil
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	b := s.cur
	buf, err := encode(b.buf)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	b.buf = buf
	b.ops = append(b.ops, o)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	<-b.done
	return b.err
}

// commitLoop writes and syncs whatever accumulated while the previous
// sync ran, until Close.
func (s *FileStore) commitLoop() {
	defer close(s.exited)
	for {
		select {
		case <-s.wake:
			s.flush()
		case <-s.quit:
			s.flush()
			return
		}
	}
}

func (s *FileStore) flush() {
	s.mu.Lock()
	b := s.cur
	if len(b.ops) == 0 {
		s.mu.Unlock()
		return
	}
	s.cur = &batch{done: make(chan struct{}), buf: make([]byte, 0, cap(b.buf))}
	s.mu.Unlock()

	s.fileMu.Lock()
	b.err = s.commitLocked(b)
	close(b.done)
	if b.err == nil {
		s.maybeCompactLocked()
	}
	s.fileMu.Unlock()
}

// commitLocked appends b to the log, syncs, and applies it to the live
// state. After a failed write or sync the file's contents are unknown, so
// the store refuses all later writes; reopening recovers.
func (s *FileStore) commitLocked(b *batch) error {
	if s.failed != nil {
		return s.failed
	}
	if _, err := s.f.WriteAt(b.buf, s.size); err != nil {
		return s.failLocked(err)
	}
	if err := s.f.Sync(); err != nil {
		return s.failLocked(err)
	}
	s.size += int64(len(b.buf))
	s.records.Add(int64(len(b.ops)))
	s.syncs.Add(1)
	s.stateMu.Lock()
	for _, o := range b.ops {
		if o.put != nil {
			s.state.vols[o.volumeID] = o.put
		} else {
			delete(s.state.vols, o.volumeID)
		}
	}
	s.state.records += len(b.ops)
	s.stateMu.Unlock()
	return nil
}

func (s *FileStore) failLocked(err error) error {
	s.failed = fmt.Errorf("attach: write %s (store unusable until reopened): %w", s.path, err)
	s.opts.logger.Error("attach: log write failed", "path", s.path, "err", err)
	return s.failed
}

func (s *FileStore) maybeCompactLocked() {
	// Records, not bytes, measure the log against the live state: they
	// are about the same size, and counting them is free.
	s.stateMu.RLock()
	records, live := int64(s.state.records), int64(len(s.state.vols))
	s.stateMu.RUnlock()
	if s.size <= s.opts.compactMinBytes || records <= s.opts.compactRatio*max(live, 1) {
		return
	}
	s.stateMu.RLock()
	buf, err := encodeState(s.state.vols)
	s.stateMu.RUnlock()
	if err == nil {
		err = s.rewriteLocked(buf)
	}
	if err == nil {
		s.stateMu.Lock()
		s.state.records = len(s.state.vols)
		s.stateMu.Unlock()
	}
	if err != nil {
		// The old log is still whole unless rewriteLocked failed the store.
		s.opts.logger.Warn("attach: compaction failed", "path", s.path, "err", err)
		return
	}
	s.opts.logger.Debug("attach: log compacted", "path", s.path, "bytes", s.size)
}

// encodeState returns a whole log holding vols.
func encodeState(vols map[string]*Attachment) ([]byte, error) {
	size := len(fileMagic)
	for _, a := range vols {
		size += putSize(a)
	}
	buf := make([]byte, 0, size)
	buf = append(buf, fileMagic...)
	var err error
	for _, a := range vols {
		if buf, err = appendPut(buf, a); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// rewriteLocked atomically replaces the log with buf: write a temporary
// file, sync it, rename it over the log, sync the directory.
func (s *FileStore) rewriteLocked(buf []byte) error {
	if s.failed != nil {
		return s.failed
	}
	tmp := s.tmpPath()
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("attach: rewrite log: %w", err)
	}
	if _, err = f.Write(buf); err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("attach: rewrite log: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("attach: rewrite log: %w", err)
	}
	// From here the new file is the log: keep writing to it whatever
	// happens, and fail the store if its name may not be durable.
	s.f.Close()
	s.f, s.size = f, int64(len(buf))
	s.compactions.Add(1)
	if err := durable.SyncDir(filepath.Dir(s.path)); err != nil {
		return s.failLocked(fmt.Errorf("attach: rewrite log: %w", err))
	}
	return nil
}

// Replace swaps the whole state for as by rewriting the log atomically.
func (s *FileStore) Replace(ctx context.Context, as []Attachment) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	vals, err := replaceState(as)
	if err != nil {
		return err
	}
	next := make(map[string]*Attachment, len(vals))
	for id, a := range vals {
		next[id] = &a
	}
	buf, err := encodeState(next)
	if err != nil {
		return err
	}
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if s.fileClosed {
		return ErrClosed
	}
	if err := s.rewriteLocked(buf); err != nil {
		return err
	}
	s.stateMu.Lock()
	s.state = logState{vols: next, records: len(next)}
	s.stateMu.Unlock()
	return nil
}

// Close flushes queued writes, stops the committer and releases the file
// and its lock. Later calls fail with ErrClosed.
func (s *FileStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if s.opts.groupCommit {
		close(s.quit)
		<-s.exited
	}
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	s.fileClosed = true
	err := s.f.Close()
	if uerr := unlockFile(s.lock); err == nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("attach: close store: %w", err)
	}
	return nil
}
