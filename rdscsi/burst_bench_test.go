package rdscsi_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

// Burst of BenchmarkBurst: how many volumes, how many concurrent callers
// (the external-provisioner's workers), and what each console command
// costs on the device.
const (
	burstVolumes   = 500
	burstCallers   = 100
	burstLatency   = 2 * time.Millisecond
	burstSessions  = 8 // rdsclient's default session limit
	burstMinPerVol = 4 // protocol minimum: CreateVolume 1 + DeleteVolume 3 (BENCHMARKS.md)
)

// BenchmarkBurst provisions like a StatefulSet scaled by 500 replicas and
// then deleted: 500 CreateVolume, then 500 DeleteVolume, each through gRPC
// over a unix socket with the interceptors, from 100 concurrent callers,
// against rdstest answering every command after 2 ms, with the client's
// session limit at its default. One op is the whole burst.
//
//   - burst-ms: wall time of the 1,000 RPCs;
//   - bound-ms: the protocol minimum (4 commands per volume, BENCHMARKS.md)
//     times 2 ms, divided by the 8 sessions that may run at once;
//   - x-bound: burst-ms / bound-ms (goal ≤ 1.25);
//   - commands: the console commands the device saw per burst.
//
// The same benchmark runs on an older tree to compare with it (see
// BENCHMARKS.md, "Burst"):
//
//	go test -run '^$' -bench BenchmarkBurst -benchtime 3x ./rdscsi/
func BenchmarkBurst(b *testing.B) {
	e := newCtrlTestEnv(b, ctrlTestConfig{})
	e.rds.Inject(rdstest.Latency(`.`, burstLatency))
	ctx := context.Background()
	bound := time.Duration(burstVolumes*burstMinPerVol) * burstLatency / burstSessions
	var wall time.Duration
	var commands int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e.rds.ResetCommands()
		names := make([]string, burstVolumes)
		for v := range names {
			names[v] = fmt.Sprintf("burst-%d-%d", i, v)
		}
		b.StartTimer()
		start := time.Now()
		ids := make([]string, burstVolumes)
		burstRun(b, burstVolumes, func(v int) error {
			r, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq(names[v], 16<<20))
			if err == nil {
				ids[v] = r.GetVolume().GetVolumeId()
			}
			return err
		})
		burstRun(b, burstVolumes, func(v int) error {
			_, err := e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: ids[v]})
			return err
		})
		wall += time.Since(start)
		b.StopTimer()
		commands += len(e.rds.Commands())
		if left, err := e.client.Disks(ctx, "pvc-"); err != nil || len(left) != 0 {
			b.Fatalf("after the burst: %d disks left, %v", len(left), err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	per := wall / time.Duration(b.N)
	b.ReportMetric(float64(per.Microseconds())/1000, "burst-ms")
	b.ReportMetric(float64(bound.Microseconds())/1000, "bound-ms")
	b.ReportMetric(float64(per)/float64(bound), "x-bound")
	b.ReportMetric(float64(commands)/float64(b.N), "commands")
}

// burstRun calls f(0..n-1) from burstCallers goroutines and fails b on the
// first error.
func burstRun(b *testing.B, n int, f func(int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, burstCallers)
	for range burstCallers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				v := int(next.Add(1)) - 1
				if v >= n {
					return
				}
				if err := f(v); err != nil {
					errs <- fmt.Errorf("call %d: %w", v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}
