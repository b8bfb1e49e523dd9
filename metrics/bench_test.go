package metrics

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/srvlab/rds-csi/attach"
)

// benchManager returns a Manager holding n attachments, every tenth one
// migrating, loaded from a MemStore as after a restart.
func benchManager(b *testing.B, n int) *attach.Manager {
	b.Helper()
	ctx := context.Background()
	as := make([]attach.Attachment, n)
	start := time.Now()
	for i := range as {
		a := attach.Attachment{VolumeID: fmt.Sprintf("pvc-%07d", i), Mode: attach.Migratable, Nodes: []string{"node-1"}}
		if i%10 == 0 {
			a.Nodes = append(a.Nodes, "node-2")
			a.MigrationStarted = start
			a.MigrationTimeout = time.Hour
		}
		as[i] = a
	}
	store := attach.NewMemStore()
	if err := store.Replace(ctx, as); err != nil {
		b.Fatal(err)
	}
	m := newManager(b, store)
	if got := m.Counts(); got.Volumes != n || got.Migrations != (n+9)/10 {
		b.Fatalf("manager counts %+v, want %d volumes", got, n)
	}
	return m
}

// listCounts is what the callback would cost without attach.Counts: an
// AttachmentSource that walks List on every collection.
type listCounts struct{ *attach.Manager }

func (l listCounts) Counts() attach.Counts { return countsFromList(l.List(), time.Now()) }

// BenchmarkCollect measures one collection (ManualReader.Collect) with the
// attachment gauges over a Manager of 10 or 100000 attachments; list-100000
// derives the counts from List instead, the cost Counts avoids.
func BenchmarkCollect(b *testing.B) {
	for _, bc := range []struct {
		name string
		n    int
		list bool
	}{
		{"10", 10, false},
		{"100000", 100000, false},
		{"list-100000", 100000, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m := benchManager(b, bc.n)
			var cs AttachmentSource = m
			if bc.list {
				cs = listCounts{m}
			}
			r, mp := newReader(b)
			newOTel(b, mp, cs)
			ctx := context.Background()
			var rm metricdata.ResourceMetrics
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := r.Collect(ctx, &rm); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if got := collect(b, r).gauges(b); got.Volumes != bc.n {
				b.Fatalf("volumes gauge %d, want %d", got.Volumes, bc.n)
			}
		})
	}
}

// BenchmarkRecord measures the hot recording paths.
func BenchmarkRecord(b *testing.B) {
	_, mp := newReader(b)
	o := newOTel(b, mp, nil)
	ctx := context.Background()
	b.Run("RPC", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			o.RPC(ctx, "NodeStageVolume", "OK", time.Millisecond)
		}
	})
	b.Run("RDSCommand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			o.RDSCommand(ctx, "disk add", "ok", time.Millisecond)
		}
	})
	b.Run("StaleMount", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			o.StaleMount(ctx)
		}
	})
}
