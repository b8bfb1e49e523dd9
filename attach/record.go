package attach

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"
)

// The log file is fileMagic followed by framed records:
//
//	crc32c(len ‖ payload) uint32 LE | len uint32 LE | payload
//
// A put payload is: kind=1 | flags (bit 0: migration start present) |
// mode varint | volume ID | node count uvarint | node IDs | [start unix ns
// varint] | timeout ns varint. A delete payload is kind=2 | volume ID.
// Strings are a uvarint length and the bytes. The checksum covers the
// length, so a run of zero bytes never passes as a record.
const (
	fileMagic   = "RDSATT\x00\x01"
	frameHeader = 8
	maxPayload  = 1 << 20

	recPut    = 1
	recDelete = 2

	flagStarted = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendPut appends a framed put record for a.
func appendPut(dst []byte, a *Attachment) ([]byte, error) {
	var started int64
	flags := byte(0)
	if !a.MigrationStarted.IsZero() {
		started = a.MigrationStarted.UnixNano()
		if !time.Unix(0, started).Equal(a.MigrationStarted) {
			return dst, fmt.Errorf("attach: volume %q: migration start out of range: %w", a.VolumeID, ErrInvalid)
		}
		flags = flagStarted
	}
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0) // frame header, filled by finishFrame
	dst = append(dst, recPut, flags)
	dst = binary.AppendVarint(dst, int64(a.Mode))
	dst = appendString(dst, a.VolumeID)
	dst = binary.AppendUvarint(dst, uint64(len(a.Nodes)))
	for _, n := range a.Nodes {
		dst = appendString(dst, n)
	}
	if flags&flagStarted != 0 {
		dst = binary.AppendVarint(dst, started)
	}
	dst = binary.AppendVarint(dst, int64(a.MigrationTimeout))
	return finishFrame(dst, start)
}

// appendDelete appends a framed delete record for volumeID.
func appendDelete(dst []byte, volumeID string) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0) // frame header, filled by finishFrame
	dst = append(dst, recDelete)
	dst = appendString(dst, volumeID)
	return finishFrame(dst, start)
}

func finishFrame(dst []byte, start int) ([]byte, error) {
	n := len(dst) - start - frameHeader
	if n > maxPayload {
		return dst[:start], fmt.Errorf("attach: record of %d bytes exceeds %d: %w", n, maxPayload, ErrInvalid)
	}
	binary.LittleEndian.PutUint32(dst[start+4:], uint32(n))
	binary.LittleEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// putSize is the framed size of a put record for a, as appendPut writes it.
func putSize(a *Attachment) int {
	n := frameHeader + 2 + varintLen(int64(a.Mode)) + strLen(a.VolumeID) + uvarintLen(uint64(len(a.Nodes)))
	for _, s := range a.Nodes {
		n += strLen(s)
	}
	if !a.MigrationStarted.IsZero() {
		n += varintLen(a.MigrationStarted.UnixNano())
	}
	return n + varintLen(int64(a.MigrationTimeout))
}

func strLen(s string) int { return uvarintLen(uint64(len(s))) + len(s) }

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}

// logState is the state replayed from a log: the live attachments and the
// number of records the log holds, which sets when to compact.
type logState struct {
	vols    map[string]*Attachment
	records int
}

// decodeLog replays the records in data (the log after its magic) into
// st and returns the length of the valid prefix. The first record that is
// cut short, fails its checksum or does not parse ends the prefix; nothing
// from it or after it is applied.
func decodeLog(data []byte, st *logState) int {
	return newLogDecoder(data).replay(0, st)
}

// logDecoder reads the records of one log body. One string holds every
// ID, so decoding allocates per record only for the node slices, which are
// carved from shared chunks.
type logDecoder struct {
	data  []byte
	text  string // the same bytes as data, as a string
	nodes []string
	atts  []Attachment
}

func newLogDecoder(data []byte) *logDecoder {
	return &logDecoder{data: data, text: string(data)}
}

// replay applies the records from off on to st, up to the first bad one,
// and returns where that one starts (len(data) if none is bad).
func (d *logDecoder) replay(off int, st *logState) int {
	for off < len(d.data) {
		end, put, id, ok := d.record(off)
		if !ok {
			return off
		}
		if put != nil {
			st.vols[put.VolumeID] = put
		} else {
			delete(st.vols, id)
		}
		st.records++
		off = end
	}
	return off
}

// frameLen returns the payload length that the frame header at off
// claims, or -1 when no record can start there: the header is cut short,
// the length is zero, over maxPayload or past the end of data, or the
// payload's kind is unknown. It reads nine bytes, so it is the cheap
// filter before a checksum.
func frameLen(data []byte, off int) int {
	if len(data)-off < frameHeader {
		return -1
	}
	n := int(binary.LittleEndian.Uint32(data[off+4:]))
	if n == 0 || n > maxPayload || n > len(data)-off-frameHeader {
		return -1
	}
	if k := data[off+frameHeader]; k != recPut && k != recDelete {
		return -1
	}
	return n
}

// record decodes the record at off and returns where it ends and either
// the Attachment it puts or the volume ID it deletes. ok is false when the
// record is cut short, fails its checksum or does not parse.
func (d *logDecoder) record(off int) (end int, put *Attachment, id string, ok bool) {
	data := d.data
	n := frameLen(data, off)
	if n < 0 {
		return 0, nil, "", false
	}
	end = off + frameHeader + n
	if crc32.Checksum(data[off+4:end], castagnoli) != binary.LittleEndian.Uint32(data[off:]) {
		return 0, nil, "", false
	}
	p := parser{data: data[:end], text: d.text, off: off + frameHeader}
	switch p.byte() {
	case recPut:
		flags := p.byte()
		a := Attachment{Mode: Mode(p.varint())}
		a.VolumeID = p.string()
		count := p.uvarint()
		if count > uint64(n) {
			return 0, nil, "", false
		}
		if len(d.nodes) < int(count) {
			d.nodes = make([]string, max(256, int(count)))
		}
		a.Nodes = d.nodes[:count:count]
		d.nodes = d.nodes[count:]
		for i := range a.Nodes {
			a.Nodes[i] = p.string()
		}
		if flags&flagStarted != 0 {
			a.MigrationStarted = time.Unix(0, p.varint()).UTC()
		}
		a.MigrationTimeout = time.Duration(p.varint())
		if p.bad || p.off != end || flags&^flagStarted != 0 {
			return 0, nil, "", false
		}
		if count == 0 {
			a.Nodes = nil
		}
		if len(d.atts) == 0 {
			d.atts = make([]Attachment, 256)
		}
		d.atts[0] = a
		put = &d.atts[0]
		d.atts = d.atts[1:]
		return end, put, "", true
	case recDelete:
		id := p.string()
		if p.bad || p.off != end {
			return 0, nil, "", false
		}
		return end, nil, id, true
	}
	return 0, nil, "", false
}

// parser reads fields of one payload; a read past the end sets bad.
type parser struct {
	data []byte
	text string // the same bytes as data, as a string
	off  int
	bad  bool
}

func (p *parser) byte() byte {
	if p.off >= len(p.data) {
		p.bad = true
		return 0
	}
	b := p.data[p.off]
	p.off++
	return b
}

func (p *parser) uvarint() uint64 {
	v, n := binary.Uvarint(p.data[min(p.off, len(p.data)):])
	if n <= 0 {
		p.bad = true
		return 0
	}
	p.off += n
	return v
}

func (p *parser) varint() int64 {
	v, n := binary.Varint(p.data[min(p.off, len(p.data)):])
	if n <= 0 {
		p.bad = true
		return 0
	}
	p.off += n
	return v
}

func (p *parser) string() string {
	n := p.uvarint()
	if p.bad || n > uint64(len(p.data)-p.off) {
		p.bad = true
		return ""
	}
	s := p.text[p.off : p.off+int(n)]
	p.off += int(n)
	return s
}
