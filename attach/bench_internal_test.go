package attach

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkOpenFileStore compares opening a FileStore holding 100000
// attachments with reading and replaying the same bytes without the
// store (no lock file, no store structures, no file kept open).
func BenchmarkOpenFileStore(b *testing.B) {
	const n = 100000
	path := filepath.Join(b.TempDir(), "attach.log")
	s, err := NewFileStore(path)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	as := make([]Attachment, n)
	for i := range as {
		as[i] = Attachment{VolumeID: fmt.Sprintf("pvc-%08d", i), Mode: Exclusive, Nodes: []string{fmt.Sprintf("node-%03d", i%500)}}
		if i%3 == 2 {
			as[i].Mode = Migratable
			as[i].Nodes = append(as[i].Nodes, fmt.Sprintf("node-%03d", (i+1)%500))
			as[i].MigrationStarted, as[i].MigrationTimeout = start, time.Hour
		}
	}
	if err := s.Replace(context.Background(), as); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	fi, _ := os.Stat(path)
	b.Logf("log of %d attachments: %d bytes", n, fi.Size())

	b.Run(fmt.Sprint(n), func(b *testing.B) {
		for b.Loop() {
			s, err := NewFileStore(path)
			if err != nil {
				b.Fatal(err)
			}
			if len(s.state.vols) != n {
				b.Fatalf("%d volumes", len(s.state.vols))
			}
			s.Close()
		}
	})
	b.Run(fmt.Sprint(n)+"+Load", func(b *testing.B) {
		for b.Loop() {
			s, err := NewFileStore(path)
			if err != nil {
				b.Fatal(err)
			}
			as, err := s.Load(context.Background())
			if err != nil || len(as) != n {
				b.Fatalf("%d volumes, %v", len(as), err)
			}
			s.Close()
		}
	})
	b.Run("decode-only", func(b *testing.B) {
		for b.Loop() {
			data, err := os.ReadFile(path)
			if err != nil {
				b.Fatal(err)
			}
			st := logState{vols: make(map[string]*Attachment, len(data)/64)}
			if decodeLog(data[len(fileMagic):], &st); len(st.vols) != n {
				b.Fatalf("%d volumes", len(st.vols))
			}
		}
	})
}
