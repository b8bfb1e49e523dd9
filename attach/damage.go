package attach

import "bytes"

// sectorSize is the unit, aligned to file offsets, in which a crash can
// leave part of an append unwritten: with delayed allocation a later page
// of an unsynced batch can reach the disk before an earlier one, which then
// reads back as zeros.
const sectorSize = 512

// scanBudget caps the bytes that inspect checksums on candidates that turn
// out not to be records. Each position after a bad record is a candidate,
// and checking one costs a checksum over the length its header claims, up
// to maxPayload, so the worst case is quadratic in the log's size. Headers
// rule out nearly every position for free (the length must be non-zero, at
// most maxPayload, fit in what remains, and be followed by a known kind),
// and a real log's damage is found within a record or two, at a cost of
// one or two 64 KiB checksums. But crafted or foreign content can make
// every fifth byte claim 64 KiB, so the budget caps such a log at well
// under a second; past it the scan gives up and the damage counts as
// corruption, the answer that keeps the file. Checksums that pass are not
// charged: they cover disjoint records, so the file's size bounds them.
const scanBudget = 256 << 20

// damage describes a log body after its valid prefix. Offsets are into
// the body (the log after its magic).
type damage struct {
	bad        int // where the first bad record starts
	next       int // where the first valid record after it starts, or -1
	records    int // valid records found after bad
	zeroSector int // an all-zero, file-aligned sector overlapping [bad, next), or -1
	gaveUp     int // where the scan ran out of budget, or -1
	checked    int // bytes checksummed on candidates that failed
}

// torn reports whether the damage is a torn write: valid records follow
// the bad one, but a sector in between was never written, so they belong
// to a batch whose sync never returned.
func (dm damage) torn() bool { return dm.next >= 0 && dm.zeroSector >= 0 }

// inspect looks for valid records after the bad record at bad, counts
// them, and looks for a zeroed sector between bad and the first of them.
// base is the body's offset in the file, to which sectors are aligned;
// budget is normally scanBudget.
func (d *logDecoder) inspect(bad, base, budget int) damage {
	dm := damage{bad: bad, next: -1, zeroSector: -1, gaveUp: -1}
	for off := bad + 1; off < len(d.data); {
		n := frameLen(d.data, off)
		if n < 0 {
			off++
			continue
		}
		if dm.checked+n > budget {
			dm.gaveUp = off
			break
		}
		end, _, _, ok := d.record(off)
		if !ok {
			dm.checked += n
			off++
			continue
		}
		if dm.next < 0 {
			dm.next = off
		}
		dm.records++
		off = end
	}
	if dm.next >= 0 {
		dm.zeroSector = zeroSectorIn(d.data, base, bad, dm.next)
	}
	return dm
}

var zeros [sectorSize]byte

// zeroSectorIn returns the body offset of the first all-zero sector,
// aligned to file offsets, that overlaps data[from:to], or -1.
func zeroSectorIn(data []byte, base, from, to int) int {
	for s := (base+from)/sectorSize*sectorSize - base; s < to; s += sectorSize {
		if s >= 0 && s+sectorSize <= len(data) && bytes.Equal(data[s:s+sectorSize], zeros[:]) {
			return s
		}
	}
	return -1
}
