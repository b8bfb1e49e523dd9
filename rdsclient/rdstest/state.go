package rdstest

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/srvlab/rds-csi/internal/routeros"
)

// Failure reasons the fake prints after "failure: ". Those marked
// "documented" and "reported" are listed in rdsclient/docs/device.md,
// "Error texts and their classes" ("reported": described for RDS but not
// yet seen); the others are the fake's choice for conditions whose device
// wording is not captured yet ("What rdstest invents").
const (
	reasonExists      = "item with this name already exists" // documented: duplicate slot
	reasonNoSpace     = "not enough space"                   // documented
	reasonNoSuchItem  = "no such item"                       // documented
	reasonDiskInUse   = "disk is in use"                     // reported (rdsclient/docs/device.md, "Error texts and their classes"): /disk remove while an initiator is connected
	reasonFileExists  = "file already exists"                // chosen: file-path taken
	reasonNQNInUse    = "nqn already in use"                 // chosen: duplicate exported NQN
	reasonBadPath     = "invalid file path"                  // chosen: not under a pool mount point
	reasonShrink      = "cannot shrink file"                 // chosen: file-size below the current size
	reasonFileInUse   = "file is in use"                     // chosen: /file remove of a disk's backing file
	reasonNotEmpty    = "directory is not empty"             // chosen: /file remove of a non-empty directory
	reasonMountPoint  = "cannot remove mount point"          // chosen: /file remove of a pool
	reasonNotFileDisk = "not a file disk"                    // chosen: set/remove of a pool, nvme or partition disk
	reasonNoType      = "type not specified"                 // chosen: /disk add without type=
	reasonNoPath      = "file-path not specified"            // chosen
	reasonNoSize      = "file-size not specified"            // chosen: no file-size and no copy-from
)

// pool is a btrfs mount point holding file disks.
type pool struct {
	name     string
	capacity int64
}

// disk is one entry of the /disk menu.
type disk struct {
	slot     string
	typ      string // "file", "nvme", "partition"
	filePath string // file disks: absolute device path, "/storage-pool/x.img"
	size     int64  // non-file disks; file disks read their file
	export   bool
	port     int
	nqn      string
	pool     *pool // set for a pool's own partition entry
	// initiators counts live host connections by the NQN they connected
	// to, which stays theirs if the disk's NQN changes or its export is
	// turned off. Live state: never saved, empty after a restart.
	initiators map[string]int
}

// inUse reports whether a host still has d connected.
func (d *disk) inUse() bool {
	for _, n := range d.initiators {
		if n > 0 {
			return true
		}
	}
	return false
}

// state is the fake's disks; the files under dataDir are their data. All
// access holds mu, which also serialises mutations.
type state struct {
	mu      sync.Mutex
	dataDir string
	pools   []*pool
	disks   []*disk
	// usedMemo caches used() between changes: every /disk print shows
	// the pools, and walking their directories each time would dominate
	// the fake's cost. Every change made through the CLI clears it; a
	// test that changes files behind the fake's back sees pool usage
	// catch up at the next change.
	usedMemo map[*pool]int64
	// persist makes save write the disk table to the data directory.
	persist bool
	// closed is set by Server.Close: no host can connect any more.
	closed bool
}

// forget drops cached pool usage after the files changed.
func (st *state) forget() { st.usedMemo = nil }

func (st *state) init(dataDir string, pools []poolSpec) error {
	st.dataDir = dataDir
	for _, p := range pools {
		if err := os.MkdirAll(filepath.Join(dataDir, p.name), 0o755); err != nil {
			return fmt.Errorf("rdstest: pool %s: %w", p.name, err)
		}
		pl := &pool{name: p.name, capacity: p.capacity}
		st.pools = append(st.pools, pl)
		st.disks = append(st.disks, &disk{slot: p.name, typ: "partition", pool: pl})
	}
	return nil
}

// hostPath maps a device path (/storage-pool/k8s/x.img) or a /file name
// (storage-pool/k8s/x.img) to the host file under dataDir.
func (st *state) hostPath(p string) string {
	return filepath.Join(st.dataDir, filepath.FromSlash(strings.TrimPrefix(p, "/")))
}

// poolOf returns the pool a file disk path lives in, or nil when the path
// is not a valid absolute path (routeros.PoolOf) strictly below the
// mount point of one of the pools.
func (st *state) poolOf(filePath string) *pool {
	name, err := routeros.PoolOf(filePath)
	if err != nil || !strings.Contains(filePath[1:], "/") {
		return nil
	}
	for _, p := range st.pools {
		if p.name == name {
			return p
		}
	}
	return nil
}

// used sums the apparent sizes of every file in the pool: thin pools are
// accounted by what their files could grow to, not by blocks on the host.
// The sum is kept between commands and moved by the fake's own changes
// (adjustUsed), so that a command costs the same however many files the
// pool holds; printing the pool's entry counts afresh (usedFresh), which
// also picks up files a test put there itself.
func (st *state) used(p *pool) int64 {
	if n, ok := st.usedMemo[p]; ok {
		return n
	}
	return st.usedFresh(p)
}

// usedFresh walks the pool's files and keeps the sum for used.
func (st *state) usedFresh(p *pool) int64 {
	var sum int64
	filepath.WalkDir(filepath.Join(st.dataDir, p.name), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				sum += fi.Size()
			}
		}
		return nil
	})
	if st.usedMemo == nil {
		st.usedMemo = make(map[*pool]int64)
	}
	st.usedMemo[p] = sum
	return sum
}

// adjustUsed moves the kept sum of the pool holding the file at device
// path filePath by delta bytes.
func (st *state) adjustUsed(filePath string, delta int64) {
	p := st.poolOf(filePath)
	if p == nil {
		st.forget()
		return
	}
	if n, ok := st.usedMemo[p]; ok {
		st.usedMemo[p] = n + delta
	}
}

func (st *state) free(p *pool) int64 { return max(0, p.capacity-st.used(p)) }

func (st *state) diskBySlot(slot string) *disk {
	for _, d := range st.disks {
		if d.slot == slot {
			return d
		}
	}
	return nil
}

// fileSize is a disk's size: a file disk's backing file is the truth.
func (st *state) fileSize(d *disk) int64 {
	if d.typ == "file" && d.filePath != "" {
		if fi, err := os.Stat(st.hostPath(d.filePath)); err == nil {
			return fi.Size()
		}
	}
	return d.size
}

// fileUsedByDisk reports whether a file disk uses the file at device path p.
func (st *state) fileUsedByDisk(p string) bool {
	for _, d := range st.disks {
		if d.typ == "file" && d.filePath == p {
			return true
		}
	}
	return false
}

func (st *state) nqnInUse(nqn string) bool {
	for _, d := range st.disks {
		if d.export && d.nqn == nqn {
			return true
		}
	}
	return false
}

// addSpec is a validated /disk add.
type addSpec struct {
	slot, filePath string
	size           int64 // 0 with copyFrom: the source's size
	copyFrom       *disk
	export         bool
	port           int
	nqn            string
}

// add creates a file disk and its sparse backing file; on any failure
// nothing is changed.
func (st *state) add(a addSpec) error {
	if st.diskBySlot(a.slot) != nil {
		return failure(reasonExists)
	}
	p := st.poolOf(a.filePath)
	if p == nil {
		return failure(reasonBadPath)
	}
	host := st.hostPath(a.filePath)
	if _, err := os.Lstat(host); err == nil || st.fileUsedByDisk(a.filePath) {
		return failure(reasonFileExists)
	}
	if a.export && st.nqnInUse(a.nqn) {
		return failure(reasonNQNInUse)
	}
	size := a.size
	if a.copyFrom != nil {
		src := st.fileSize(a.copyFrom)
		if size == 0 {
			size = src
		} else if size < src {
			return errValue("file-size")
		}
	}
	if size > st.free(p) {
		return failure(reasonNoSpace)
	}
	if err := st.createFile(host, size, a.copyFrom); err != nil {
		return failure("could not create file")
	}
	st.adjustUsed(a.filePath, size)
	st.disks = append(st.disks, &disk{
		slot: a.slot, typ: "file", filePath: a.filePath,
		export: a.export, port: a.port, nqn: a.nqn,
	})
	return nil
}

func (st *state) createFile(host string, size int64, from *disk) (err error) {
	if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(host, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(host)
		}
	}()
	if err := f.Truncate(size); err != nil {
		return err
	}
	if from == nil {
		return nil
	}
	src, err := os.Open(st.hostPath(from.filePath))
	if err != nil {
		return err
	}
	defer src.Close()
	return copySparse(f, src)
}

// resize grows every target's backing file to size, checking all first.
func (st *state) resize(targets []*disk, size int64) error {
	need := map[*pool]int64{}
	for _, d := range targets {
		if d.typ != "file" || d.filePath == "" {
			return failure(reasonNotFileDisk)
		}
		cur := st.fileSize(d)
		if size < cur {
			return failure(reasonShrink)
		}
		if p := st.poolOf(d.filePath); p != nil {
			need[p] += size - cur
		}
	}
	for p, n := range need {
		if n > st.free(p) {
			return failure(reasonNoSpace)
		}
	}
	for _, d := range targets {
		cur := st.fileSize(d)
		if err := os.Truncate(st.hostPath(d.filePath), size); err != nil {
			st.forget()
			return failure("could not resize file")
		}
		st.adjustUsed(d.filePath, size-cur)
	}
	return nil
}

// removeDisks removes file disks; their backing files stay. Like resize
// it checks every target first, so one refused target (not a file disk,
// or in use) leaves the others in place too.
func (st *state) removeDisks(targets []*disk) error {
	for _, d := range targets {
		if d.typ != "file" {
			return failure(reasonNotFileDisk)
		}
		if d.inUse() {
			return failure(reasonDiskInUse)
		}
	}
	kept := st.disks[:0]
	for _, d := range st.disks {
		drop := false
		for _, t := range targets {
			drop = drop || t == d
		}
		if !drop {
			kept = append(kept, d)
		}
	}
	clear(st.disks[len(kept):])
	st.disks = kept
	return nil
}

// fileEntry is one entry of the /file menu.
type fileEntry struct {
	name    string // no leading slash: storage-pool/k8s/x.img
	typ     string // "disk" for a pool, "directory", ".img file", "file"
	size    int64
	modTime time.Time
}

// filesFor lists the entries condition c (nil: all) may match: the one
// named by a "name=<name>" condition, else all of them (files).
func (st *state) filesFor(c cond) []fileEntry {
	if name, ok := exactValue(c, "name"); ok {
		if e, ok := st.file(name); ok {
			return []fileEntry{e}
		}
		return nil
	}
	return st.files()
}

// file returns the entry of the file or directory named name (no leading
// slash), as files would list it, without walking the pools.
func (st *state) file(name string) (fileEntry, bool) {
	if name == "" || strings.HasPrefix(name, "/") || path.Clean(name) != name {
		return fileEntry{}, false
	}
	poolName, _, _ := strings.Cut(name, "/")
	var root string
	for _, p := range st.pools {
		if p.name == poolName {
			root = filepath.Join(st.dataDir, p.name)
		}
	}
	if root == "" {
		return fileEntry{}, false
	}
	host := filepath.Join(st.dataDir, filepath.FromSlash(name))
	fi, err := os.Lstat(host)
	if err != nil {
		return fileEntry{}, false
	}
	e := fileEntry{name: name, modTime: fi.ModTime()}
	switch {
	case host == root:
		e.typ = "disk"
	case fi.IsDir():
		e.typ = "directory"
	case fi.Mode().IsRegular():
		e.size = fi.Size()
		e.typ = "file"
		if ext := path.Ext(fi.Name()); ext != "" {
			e.typ = ext + " file"
		}
	default:
		return fileEntry{}, false
	}
	return e, true
}

// files lists every directory and file under the pools, in name order.
func (st *state) files() []fileEntry {
	var out []fileEntry
	for _, p := range st.pools {
		root := filepath.Join(st.dataDir, p.name)
		filepath.WalkDir(root, func(host string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			rel, err := filepath.Rel(st.dataDir, host)
			if err != nil {
				return nil
			}
			e := fileEntry{name: filepath.ToSlash(rel), modTime: fi.ModTime()}
			switch {
			case host == root:
				e.typ = "disk"
			case d.IsDir():
				e.typ = "directory"
			case d.Type().IsRegular():
				e.size = fi.Size()
				e.typ = "file"
				if ext := path.Ext(d.Name()); ext != "" {
					e.typ = ext + " file"
				}
			default:
				return nil
			}
			out = append(out, e)
			return nil
		})
	}
	return out
}

// removeFiles deletes files and empty directories, checking all first.
func (st *state) removeFiles(names []string) error {
	for _, n := range names {
		if st.fileUsedByDisk("/" + n) {
			return failure(reasonFileInUse)
		}
		if !strings.Contains(n, "/") {
			return failure(reasonMountPoint)
		}
		host := st.hostPath(n)
		fi, err := os.Lstat(host)
		if err != nil {
			return failure(reasonNoSuchItem)
		}
		if fi.IsDir() {
			ents, err := os.ReadDir(host)
			if err != nil || len(ents) > 0 {
				return failure(reasonNotEmpty)
			}
		}
	}
	for _, n := range names {
		host := st.hostPath(n)
		var size int64
		if fi, err := os.Lstat(host); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
		if err := os.Remove(host); err != nil && !errors.Is(err, fs.ErrNotExist) {
			st.forget()
			return failure("could not remove file")
		}
		st.adjustUsed("/"+n, -size)
	}
	return nil
}

func (st *state) addForeign(f ForeignDisk) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	defer st.forget() // under st.mu: runs before the unlock
	if f.Slot == "" || st.diskBySlot(f.Slot) != nil {
		return fmt.Errorf("%w: slot %q empty or taken", ErrInvalidOption, f.Slot)
	}
	d := &disk{slot: f.Slot, typ: f.Type, filePath: f.FilePath, size: f.SizeBytes}
	if d.typ == "" {
		d.typ = "file"
	}
	if f.NQN != "" {
		d.export, d.port, d.nqn = true, 4420, f.NQN
	}
	if d.typ == "file" && st.poolOf(f.FilePath) != nil {
		host := st.hostPath(f.FilePath)
		if _, err := os.Stat(host); errors.Is(err, fs.ErrNotExist) {
			if err := st.createFile(host, f.SizeBytes, nil); err != nil {
				return err
			}
		}
	}
	st.disks = append(st.disks, d)
	return st.save()
}

// diskItem returns the properties /disk print shows for d, in the device's
// order, with the line groups of the capture (rdsclient/docs/device.md,
// "Output format" and "Wrapping").
func (st *state) diskItem(d *disk) props {
	if d.pool != nil {
		used := st.usedFresh(d.pool)
		free := max(0, d.pool.capacity-used)
		use := int64(math.Round(float64(used) * 100 / float64(d.pool.capacity)))
		// Pool entries as rdsclient/docs/device.md, "Output format",
		// describes them, with slot unquoted.
		return props{
			{key: "slot", raw: d.slot, group: true},
			{key: "type", raw: "partition"},
			{key: "mount-point", raw: d.pool.name},
			{key: "file-system", raw: "btrfs"},
			{key: "size", raw: itoa(d.pool.capacity), kind: kBytes, group: true},
			{key: "free", raw: itoa(free), kind: kBytes},
			{key: "use", raw: itoa(use) + "%"},
		}
	}
	size := st.fileSize(d)
	model := d.filePath
	if d.typ != "file" {
		model = d.slot
	}
	slotDefault := ""
	if d.typ == "nvme" {
		slotDefault = d.slot
	}
	p := props{
		{key: "type", raw: d.typ, group: true},
		{key: "slot", raw: d.slot, kind: kQuoted},
		{key: "slot-default", raw: slotDefault, kind: kQuoted},
		{key: "parent", raw: "", kind: kQuoted},
		{key: "fs", raw: "-"},
		{key: "model", raw: model, kind: kQuoted, group: true},
		{key: "size", raw: itoa(size), kind: kBytes, group: true},
		{key: "mount-filesystem", raw: "yes"},
		{key: "mount-read-only", raw: "no"},
		{key: "compress", raw: "no", group: true},
		{key: "sector-size", raw: "512", kind: kNumber},
		{key: "raid-master", raw: "none"},
		{key: "nvme-tcp-export", raw: yesNo(d.export), group: true},
	}
	// A disk that is not exported shows no port, NQN or allowed host.
	if d.export {
		p = append(p,
			prop{key: "nvme-tcp-server-port", raw: itoa(int64(d.port)), kind: kNumber},
			prop{key: "nvme-tcp-server-nqn", raw: d.nqn, kind: kQuoted, group: true},
			prop{key: "nvme-tcp-server-allow-host-name", raw: "", kind: kQuoted, group: true},
		)
	}
	p = append(p,
		prop{key: "iscsi-export", raw: "no", group: !d.export},
		prop{key: "nfs-sharing", raw: "no", group: true},
		prop{key: "smb-sharing", raw: "no"},
		prop{key: "media-sharing", raw: "no"},
		prop{key: "media-interface", raw: "none", group: true},
		prop{key: "swap", raw: "no"},
	)
	if d.typ == "file" {
		p = append(p,
			prop{key: "file-path", raw: d.filePath, group: true},
			prop{key: "file-size", raw: itoa(size), kind: kHuman, group: true},
			prop{key: "file-offset", raw: "0", kind: kNumber},
		)
	}
	return p
}

// fileItem returns the properties /file print shows, grouped as in the
// capture (rdsclient/docs/device.md, "Output format").
func fileItem(e fileEntry) props {
	p := props{
		{key: "name", raw: e.name, group: true},
		{key: "type", raw: e.typ},
	}
	if e.typ != "directory" && e.typ != "disk" {
		p = append(p, prop{key: "size", raw: itoa(e.size), kind: kHuman})
	}
	return append(p, prop{key: "last-modified", raw: e.modTime.Local().Format(time.DateTime), kind: kTime, group: true})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
