package attach_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/attach"
)

// BenchmarkAttachDetach measures Attach+Detach pairs per second on a
// FileStore with 64 concurrent callers, each on its own volume, with and
// without group commit.
func BenchmarkAttachDetach(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts []attach.FileOption
	}{
		{"group-commit", nil},
		{"fsync-per-op", []attach.FileOption{attach.WithGroupCommit(false)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			s := openFileStore(b, tempLog(b), tc.opts...)
			defer s.Close()
			m, err := attach.NewManager(ctx, s)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			var next atomic.Int64
			b.SetParallelism((64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				vol := "pvc-" + strconv.FormatInt(next.Add(1), 10)
				for pb.Next() {
					if err := m.Attach(ctx, attach.Request{VolumeID: vol, NodeID: "node-a", Mode: attach.Exclusive}); err != nil {
						b.Error(err)
						return
					}
					if err := m.Detach(ctx, vol, "node-a"); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
			b.ReportMetric(float64(next.Load()), "callers")
			st := s.Stats()
			b.ReportMetric(float64(st.Records)/float64(st.Syncs), "records/sync")
		})
	}
}

// benchState returns n attachments: a third exclusive, a third on one
// node, a third migrating with deadlines far ahead (so the heap is full).
func benchState(n int) []attach.Attachment {
	start := time.Now()
	out := make([]attach.Attachment, n)
	for i := range out {
		a := attach.Attachment{VolumeID: fmt.Sprintf("pvc-%08d", i), Mode: attach.Exclusive,
			Nodes: []string{fmt.Sprintf("node-%03d", i%500)}}
		switch i % 3 {
		case 1:
			a.Mode = attach.Migratable
		case 2:
			a.Mode = attach.Migratable
			a.Nodes = append(a.Nodes, fmt.Sprintf("node-%03d", (i+1)%500))
			a.MigrationStarted = start
			a.MigrationTimeout = time.Duration(24+i%100) * time.Hour
		}
		out[i] = a
	}
	return out
}

// BenchmarkCounts shows Counts costs the same with 10 and 100000
// attachments.
func BenchmarkCounts(b *testing.B) {
	for _, n := range []int{10, 100000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			ctx := context.Background()
			m, err := attach.NewManager(ctx, attach.NewMemStore())
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			if err := m.Replace(ctx, benchState(n)); err != nil {
				b.Fatal(err)
			}
			var c attach.Counts
			for b.Loop() {
				c = m.Counts()
			}
			if c.Volumes != n {
				b.Fatalf("Counts %+v", c)
			}
		})
	}
}
