package attach

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"reflect"
	"testing"
	"time"
)

func sampleLog(t testing.TB) []byte {
	t.Helper()
	var buf []byte
	var err error
	for _, a := range []Attachment{
		{VolumeID: "pvc-a", Mode: Exclusive, Nodes: []string{"node-1"}},
		{VolumeID: "pvc-b", Mode: Migratable, Nodes: []string{"node-1", "node-2"},
			MigrationStarted: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC), MigrationTimeout: 5 * time.Minute},
		{VolumeID: "pvc-c", Mode: Migratable, Nodes: []string{"node-3"}},
		{VolumeID: "pvc-a", Mode: Exclusive, Nodes: []string{"node-9"}},
	} {
		if buf, err = appendPut(buf, &a); err != nil {
			t.Fatal(err)
		}
	}
	if buf, err = appendDelete(buf, "pvc-c"); err != nil {
		t.Fatal(err)
	}
	return buf
}

func TestDecodeLog(t *testing.T) {
	data := sampleLog(t)
	st := logState{vols: map[string]*Attachment{}}
	if n := decodeLog(data, &st); n != len(data) {
		t.Fatalf("valid prefix %d of %d", n, len(data))
	}
	want := map[string]*Attachment{
		"pvc-a": &Attachment{VolumeID: "pvc-a", Mode: Exclusive, Nodes: []string{"node-9"}},
		"pvc-b": &Attachment{VolumeID: "pvc-b", Mode: Migratable, Nodes: []string{"node-1", "node-2"},
			MigrationStarted: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC), MigrationTimeout: 5 * time.Minute},
	}
	if !reflect.DeepEqual(st.vols, want) {
		t.Fatalf("decoded %+v\nwant %+v", st.vols, want)
	}
	if st.records != 5 {
		t.Fatalf("%d records, want 5", st.records)
	}
}

// checkLive verifies that a compacted log holds one record per volume.
func checkLive(t *testing.T, st *logState) {
	t.Helper()
	if st.records != len(st.vols) {
		t.Fatalf("%d records for %d volumes", st.records, len(st.vols))
	}
}

func TestPutSizeMatchesEncoding(t *testing.T) {
	for _, a := range []Attachment{
		{VolumeID: "v", Mode: Exclusive, Nodes: []string{"n"}},
		{VolumeID: string(make([]byte, 300)), Mode: Mode(-3), Nodes: []string{string(make([]byte, 200)), "x"},
			MigrationStarted: time.Unix(0, -5), MigrationTimeout: -time.Hour},
		{VolumeID: "v", Mode: Migratable, Nodes: nil, MigrationStarted: time.Unix(1<<33, 0)},
	} {
		buf, err := appendPut(nil, &a)
		if err != nil {
			t.Fatal(err)
		}
		if len(buf) != putSize(&a) {
			t.Errorf("putSize %d, encoded %d", putSize(&a), len(buf))
		}
	}
}

// FuzzDecodeLog feeds arbitrary bytes to the log decoder: it must not
// panic, its valid prefix must decode the same on its own, and the decoded
// state must survive re-encoding.
func FuzzDecodeLog(f *testing.F) {
	data := sampleLog(f)
	f.Add(data)
	f.Add(data[:len(data)-3])
	f.Add(append(bytes.Clone(data), make([]byte, 16)...))
	f.Add([]byte{})
	f.Fuzz(checkDecode)
}

// FuzzDecodePayload frames arbitrary payloads with valid checksums, so
// that the fuzzer explores the record parser behind the checksum.
func FuzzDecodePayload(f *testing.F) {
	data := sampleLog(f)
	for off := 0; off < len(data); {
		n := int(binary.LittleEndian.Uint32(data[off+4:]))
		f.Add(data[off+frameHeader : off+frameHeader+n])
		off += frameHeader + n
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		frame := make([]byte, frameHeader, frameHeader+len(payload))
		frame = append(frame, payload...)
		binary.LittleEndian.PutUint32(frame[4:], uint32(len(payload)))
		binary.LittleEndian.PutUint32(frame, crc32.Checksum(frame[4:], castagnoli))
		checkDecode(t, append(frame, frame...))
	})
}

func checkDecode(t *testing.T, data []byte) {
	st := logState{vols: map[string]*Attachment{}}
	n := decodeLog(data, &st)
	if n < 0 || n > len(data) {
		t.Fatalf("valid prefix %d of %d", n, len(data))
	}
	again := logState{vols: map[string]*Attachment{}}
	if m := decodeLog(data[:n], &again); m != n || !reflect.DeepEqual(again.vols, st.vols) {
		t.Fatalf("prefix decodes differently: %d vs %d", m, n)
	}
	buf, err := encodeState(st.vols)
	if err != nil {
		t.Fatalf("re-encode: %v", err)
	}
	round := logState{vols: map[string]*Attachment{}}
	if m := decodeLog(buf[len(fileMagic):], &round); m != len(buf)-len(fileMagic) {
		t.Fatalf("re-encoded log valid to %d of %d", m, len(buf)-len(fileMagic))
	}
	if !reflect.DeepEqual(round.vols, st.vols) {
		t.Fatalf("round trip changed state:\n%+v\n%+v", round.vols, st.vols)
	}
	checkLive(t, &round)
}
