package rdsclient

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/srvlab/rds-csi/internal/routeros"
)

// CreateDisk creates a file-backed disk and returns it. It sends one
// command, the add: a silent add has created exactly spec (its size
// rounded up to a MiB), so the disk is described from spec without a
// read. When the slot already exists it fails with an error wrapping
// ErrExists; the caller decides whether the existing disk is the one it
// wanted. If the connection drops after the add was sent, the disk is
// read back: a disk matching spec means success, no disk means the add
// did not run and it is sent once more.
func (c *Client) CreateDisk(ctx context.Context, spec DiskSpec) (Disk, error) {
	args, size, err := diskAddArgs(spec, false)
	if err != nil {
		return Disk{}, err
	}
	if err := c.enter("disk add"); err != nil {
		return Disk{}, err
	}
	defer c.leave()
	return c.addDisk(ctx, "/disk add type=file "+args, spec, size)
}

// CopyDisk creates a copy-on-write copy of source, a disk as read by Disk
// or Disks, as described by spec. With a size in spec it sends one
// command; the size must be at least the source's as read (ErrInvalid
// otherwise, and nothing is sent). SizeBytes 0 lets the device give the
// copy the source's size at the moment of the copy, which may have
// changed since source was read, so the copy is then read back. It fails
// with ErrExists when spec.Slot exists, and with the device's error
// (ErrNotFound for "no such item") when source is gone.
func (c *Client) CopyDisk(ctx context.Context, source Disk, spec DiskSpec) (Disk, error) {
	src, err := quoteSlot("source slot", source.Slot)
	if err != nil {
		return Disk{}, err
	}
	args, size, err := diskAddArgs(spec, true)
	if err != nil {
		return Disk{}, err
	}
	if size != 0 && size < source.SizeBytes {
		return Disk{}, invalidf("copy size %d is smaller than source %q (%d bytes)", size, source.Slot, source.SizeBytes)
	}
	if err := c.enter("disk add"); err != nil {
		return Disk{}, err
	}
	defer c.leave()
	line := "/disk add type=file copy-from=[find slot=" + src + "] " + args
	d, err := c.addDisk(ctx, line, spec, size)
	if err != nil || size != 0 {
		return d, err
	}
	d, err = c.disk(ctx, spec.Slot)
	if errors.Is(err, ErrNotFound) {
		return Disk{}, unexpectedf("disk %q not found after it was copied", spec.Slot)
	}
	return d, err
}

// addDisk sends a /disk add. A silent add returns the disk spec
// describes; an add whose outcome is unknown is resolved by reading the
// disk back and repeated at most once, only when the disk is known to be
// absent.
func (c *Client) addDisk(ctx context.Context, line string, spec DiskSpec, size int64) (Disk, error) {
	for try := 0; ; try++ {
		_, err := c.run(ctx, "disk add", line, true)
		if err == nil {
			return specDisk(spec, size), nil
		}
		if !outcomeUnknown(err) {
			return Disk{}, err
		}
		d, rerr := c.disk(ctx, spec.Slot)
		switch {
		case rerr == nil && matches(d, spec, size):
			return d, nil
		case rerr == nil:
			return Disk{}, fmt.Errorf("%w: slot %q holds a different disk after an interrupted add", ErrExists, spec.Slot)
		case !errors.Is(rerr, ErrNotFound):
			return Disk{}, rerr
		case try > 0:
			return Disk{}, err
		}
		c.log.DebugContext(ctx, "rdsclient: interrupted add did not happen, sending it again", "slot", spec.Slot)
	}
}

// specDisk is the disk a silent /disk add of spec has created, size being
// its exact size.
func specDisk(spec DiskSpec, size int64) Disk {
	d := Disk{Slot: spec.Slot, Type: "file", FilePath: spec.FilePath, SizeBytes: size}
	if spec.Export != nil {
		e := *spec.Export
		if e.Port == 0 {
			e.Port = defaultNVMePort
		}
		d.Export = &e
	}
	return d
}

// Disk returns the disk with this slot, or an error wrapping ErrNotFound.
func (c *Client) Disk(ctx context.Context, slot string) (Disk, error) {
	if _, err := quoteSlot("slot", slot); err != nil {
		return Disk{}, err
	}
	if err := c.enter("disk print"); err != nil {
		return Disk{}, err
	}
	defer c.leave()
	return c.disk(ctx, slot)
}

// disk reads one disk; slot must be valid. Concurrent reads are
// coalesced (WithCoalescedReads).
func (c *Client) disk(ctx context.Context, slot string) (Disk, error) {
	if _, err := quoteSlot("slot", slot); err != nil {
		return Disk{}, err
	}
	e, err := c.readDisks(ctx, "slot", slot)
	if err != nil {
		return Disk{}, err
	}
	return parseDisk(e)
}

// Disks lists the disks whose slot starts with slotPrefix, which must
// itself be a valid slot (e.g. "pvc-").
func (c *Client) Disks(ctx context.Context, slotPrefix string) ([]Disk, error) {
	if err := routeros.ValidSlot(slotPrefix); err != nil {
		return nil, invalidf("slot prefix: %w", err)
	}
	q, err := routeros.Quote("^" + slotPrefix)
	if err != nil {
		return nil, invalidf("slot prefix: %w", err)
	}
	// The regexp already anchors the prefix; checking again keeps a
	// misbehaving filter from handing out foreign disks.
	return c.listDisks(ctx, "/disk print detail where slot~"+q, func(slot string) bool {
		return strings.HasPrefix(slot, slotPrefix)
	})
}

// FileUsers reads, in one print of every disk whatever its slot or type,
// which disk uses which backing file: it maps each file path a disk names
// ("/storage-pool/k8s/x.img", as printed) to that disk's slot. It is the
// evidence a caller needs before deciding that no disk uses a file, so
// only what that needs is read: an entry whose other properties this
// client does not know (a drive, a RAID, another owner's disk) still
// counts, and output it cannot parse at all fails the call rather than
// being taken as "no users".
func (c *Client) FileUsers(ctx context.Context) (map[string]string, error) {
	entries, err := c.printDisks(ctx, "/disk print detail")
	if err != nil {
		return nil, err
	}
	users := make(map[string]string, len(entries))
	for _, e := range entries {
		if fp, _ := e.Get("file-path"); fp != "" && fp != "-" {
			slot, _ := e.Get("slot")
			users[fp] = slot
		}
	}
	return users, nil
}

// printDisks runs a /disk print detail line and parses its entries.
func (c *Client) printDisks(ctx context.Context, line string) ([]routeros.Entry, error) {
	if err := c.enter("disk print"); err != nil {
		return nil, err
	}
	defer c.leave()
	out, err := c.run(ctx, "disk print", line, false)
	if err != nil {
		return nil, err
	}
	entries, err := routeros.ParseDetail(out, c.width)
	if err != nil {
		return nil, unexpectedf("%s: %w", line, err)
	}
	return entries, nil
}

// listDisks runs a /disk print line and parses the entries whose slot
// keep accepts.
func (c *Client) listDisks(ctx context.Context, line string, keep func(slot string) bool) ([]Disk, error) {
	entries, err := c.printDisks(ctx, line)
	if err != nil {
		return nil, err
	}
	disks := make([]Disk, 0, len(entries))
	for _, e := range entries {
		if s, _ := e.Get("slot"); !keep(s) {
			continue
		}
		d, err := parseDisk(e)
		if err != nil {
			return nil, err
		}
		disks = append(disks, d)
	}
	return disks, nil
}

// ResizeDisk grows d, a file disk as read by Disk or Disks, to sizeBytes
// (rounded up to a MiB) and returns it as read back. It sends the set and
// one print: a set whose [find] matches nothing is silent, so only the
// read shows that the disk exists and has grown. Asking for less than d's
// size is ErrInvalid and sends nothing; asking for d's size sends nothing
// and returns d.
func (c *Client) ResizeDisk(ctx context.Context, d Disk, sizeBytes int64) (Disk, error) {
	q, err := quoteSlot("slot", d.Slot)
	if err != nil {
		return Disk{}, err
	}
	sizeStr, size, err := sizeArg(sizeBytes)
	if err != nil {
		return Disk{}, err
	}
	if d.Type != "file" {
		return Disk{}, invalidf("disk %q is of type %q, only file disks can be resized", d.Slot, d.Type)
	}
	switch {
	case size < d.SizeBytes:
		return Disk{}, invalidf("disk %q has %d bytes, shrinking to %d is not supported", d.Slot, d.SizeBytes, size)
	case size == d.SizeBytes:
		return d, nil
	}
	if err := c.enter("disk set"); err != nil {
		return Disk{}, err
	}
	defer c.leave()
	line := "/disk set [find slot=" + q + "] file-size=" + sizeStr
	for try := 0; ; try++ {
		_, err := c.run(ctx, "disk set", line, true)
		if err != nil && !outcomeUnknown(err) {
			return Disk{}, err
		}
		r, rerr := c.disk(ctx, d.Slot)
		switch {
		case rerr != nil:
			return Disk{}, rerr
		case r.SizeBytes >= size:
			return r, nil
		case err == nil:
			return Disk{}, unexpectedf("disk %q has %d bytes after resize to %d", d.Slot, r.SizeBytes, size)
		case try > 0:
			return Disk{}, err
		}
		// The interrupted set did not happen: send it once more.
	}
}

// DeleteDisk removes d, a disk as read by Disk or Disks, and then its
// backing file. Disks that are not file-backed are refused with
// ErrInvalid so that drives and partitions are never removed. It sends
// the remove, one print and the removal of the file: the file is removed
// only after the print has shown the disk absent, since neither a silent
// remove (which an empty [find] also is) nor "no such item" is taken on
// trust. A disk removed meanwhile is not an error. An orphan backing file
// without a disk is removed with RemoveFile.
func (c *Client) DeleteDisk(ctx context.Context, d Disk) error {
	q, err := quoteSlot("slot", d.Slot)
	if err != nil {
		return err
	}
	if d.Type != "file" {
		return invalidf("disk %q is of type %q, only file disks are removed", d.Slot, d.Type)
	}
	var file string
	if d.FilePath != "" {
		if file, err = fileName(d.FilePath); err != nil {
			// Checked before removing anything, so nothing is half done.
			return unexpectedf("disk %q has a file path that cannot be used safely: %w", d.Slot, err)
		}
	}
	if err := c.enter("disk remove"); err != nil {
		return err
	}
	defer c.leave()
	line := "/disk remove [find slot=" + q + "]"
	for try := 0; ; try++ {
		_, err := c.run(ctx, "disk remove", line, true)
		if err != nil && !errors.Is(err, ErrNotFound) && !outcomeUnknown(err) {
			return err
		}
		// Success, "no such item" or an unknown outcome: only reading
		// the disk back proves it is gone.
		_, rerr := c.disk(ctx, d.Slot)
		if errors.Is(rerr, ErrNotFound) {
			break
		}
		switch {
		case rerr != nil:
			return rerr
		case err == nil || errors.Is(err, ErrNotFound):
			return unexpectedf("disk %q still exists after %s", d.Slot, line)
		case try > 0:
			return err
		}
		// The interrupted remove did not happen: send it once more.
	}
	if file == "" {
		return nil
	}
	return c.removeFile(ctx, file)
}

// parseDisk converts one /disk entry.
func parseDisk(e routeros.Entry) (Disk, error) {
	var d Disk
	var ok bool
	if d.Slot, ok = e.Get("slot"); !ok || d.Slot == "" {
		return Disk{}, unexpectedf("disk entry %d has no slot", e.Index)
	}
	d.Type, _ = e.Get("type")
	size, ok := e.Get("size")
	if !ok {
		return Disk{}, unexpectedf("disk %q has no size", d.Slot)
	}
	n, err := routeros.ParseNumber(size)
	if err != nil {
		return Disk{}, unexpectedf("disk %q size: %w", d.Slot, err)
	}
	d.SizeBytes = n
	if fp, _ := e.Get("file-path"); fp != "" && fp != "-" {
		d.FilePath = fp
	}
	if d.Type == "file" && d.FilePath == "" {
		return Disk{}, unexpectedf("file disk %q has no file-path", d.Slot)
	}
	if v, ok := e.Get("nvme-tcp-export"); ok {
		export, err := routeros.ParseBool(v)
		if err != nil {
			return Disk{}, unexpectedf("disk %q nvme-tcp-export: %w", d.Slot, err)
		}
		if export {
			ps, _ := e.Get("nvme-tcp-server-port")
			port, err := routeros.ParseNumber(ps)
			if err != nil || port < 1 || port > 65535 {
				return Disk{}, unexpectedf("disk %q nvme-tcp-server-port %q", d.Slot, ps)
			}
			nqn, _ := e.Get("nvme-tcp-server-nqn")
			if nqn == "" {
				return Disk{}, unexpectedf("exported disk %q has no nvme-tcp-server-nqn", d.Slot)
			}
			d.Export = &NVMeExport{Port: int(port), NQN: nqn}
		}
	}
	return d, nil
}
