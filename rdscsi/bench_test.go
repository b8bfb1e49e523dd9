package rdscsi_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
	"github.com/srvlab/rds-csi/rdscsi"
)

// BenchmarkCreateDelete measures what the CSI layer adds to provisioning:
// CreateVolume plus DeleteVolume through gRPC over a unix socket with the
// logging, metrics and serialization interceptors (grpc-unix), against the
// same rdsclient calls made directly (direct): CreateDisk, then a Disk
// lookup and DeleteDisk, as the controller sends them. Both run against the same kind of fake RDS; commands/op shows that
// the two send the same console commands.
//
//	go test -run '^$' -bench BenchmarkCreateDelete -benchtime 200x ./rdscsi/
func BenchmarkCreateDelete(b *testing.B) {
	const size = 16 << 20
	b.Run("grpc-unix", func(b *testing.B) {
		e := newCtrlTestEnv(b, ctrlTestConfig{})
		ctx := context.Background()
		e.rds.ResetCommands()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq(fmt.Sprintf("bench-%d", i), size))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: r.Volume.VolumeId}); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(len(e.rds.Commands()))/float64(b.N), "commands/op")
	})
	b.Run("in-process", func(b *testing.B) {
		// The ControllerServer's methods called without gRPC: what the
		// controller logic costs on its own.
		e := newCtrlTestEnv(b, ctrlTestConfig{})
		ctx := context.Background()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r, err := e.ctrl.CreateVolume(ctx, ctrlTestCreateReq(fmt.Sprintf("bench-%d", i), size))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := e.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: r.Volume.VolumeId}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("direct", func(b *testing.B) {
		e := newCtrlTestEnv(b, ctrlTestConfig{})
		ctx := context.Background()
		e.rds.ResetCommands()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := ctrlTestDirectCreateDelete(ctx, e.client, fmt.Sprintf("bench-%d", i), size); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(len(e.rds.Commands()))/float64(b.N), "commands/op")
	})
}

// BenchmarkCreateDeleteInterleaved runs a CSI path and the direct
// baseline of BenchmarkCreateDelete alternately, one operation each,
// against one fake, so that load from other processes hits both alike: on
// a shared machine it gives a steadier ratio than separate runs.
//
//   - fake: CreateVolume and DeleteVolume through gRPC against the bare
//     in-process fake (a command takes ~0.15 ms).
//
//   - fake-rpc-floor: two GetPluginInfo RPCs, which do no I/O, on the same
//     socket and interceptor chain, plus CreateVolume and DeleteVolume
//     called in-process: what two round trips of this gRPC transport cost
//     in the same conditions, whatever the handlers do.
//
//   - rds-2ms: as fake, with 2 ms added to every command, still faster
//     than an SSH exec on a real RDS.
//
//   - fake-above-floor: fake, fake-rpc-floor and the direct path in turn,
//     operation by operation, reporting the points fake adds above the
//     floor (above-floor-points).
//
// Run it with
//
//	go test -run '^$' -bench BenchmarkCreateDeleteInterleaved -benchtime 1000x ./rdscsi/
func BenchmarkCreateDeleteInterleaved(b *testing.B) {
	const size = 16 << 20
	viaGRPC := func(ctx context.Context, e *ctrlTestEnv, name string) error {
		r, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq(name, size))
		if err != nil {
			return err
		}
		_, err = e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: r.Volume.VolumeId})
		return err
	}
	rpcFloor := func(ctx context.Context, e *ctrlTestEnv, name string) error {
		for range 2 {
			if _, err := e.ic.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{}); err != nil {
				return err
			}
		}
		r, err := e.ctrl.CreateVolume(ctx, ctrlTestCreateReq(name, size))
		if err != nil {
			return err
		}
		_, err = e.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: r.Volume.VolumeId})
		return err
	}
	b.Run("fake-above-floor", func(b *testing.B) {
		// fake and fake-rpc-floor alternated with direct, operation by
		// operation: the points the real RPCs add above the floor, with
		// the machine's drift hitting all three alike.
		e := newCtrlTestEnv(b, ctrlTestConfig{})
		ctx := context.Background()
		var viaRPC, floor, direct time.Duration
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			if err := viaGRPC(ctx, e, fmt.Sprintf("bench-rpc-%d", i)); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := rpcFloor(ctx, e, fmt.Sprintf("bench-floor-%d", i)); err != nil {
				b.Fatal(err)
			}
			t2 := time.Now()
			if err := ctrlTestDirectCreateDelete(ctx, e.client, fmt.Sprintf("bench-direct-%d", i), size); err != nil {
				b.Fatal(err)
			}
			viaRPC, floor, direct = viaRPC+t1.Sub(t0), floor+t2.Sub(t1), direct+time.Since(t2)
		}
		b.StopTimer()
		rpcPct := 100 * (float64(viaRPC)/float64(direct) - 1)
		floorPct := 100 * (float64(floor)/float64(direct) - 1)
		b.ReportMetric(rpcPct, "overhead-%")
		b.ReportMetric(floorPct, "floor-%")
		b.ReportMetric(rpcPct-floorPct, "above-floor-points")
	})
	for _, bc := range []struct {
		name    string
		latency time.Duration
		path    func(context.Context, *ctrlTestEnv, string) error
	}{
		{"fake", 0, viaGRPC},
		{"fake-rpc-floor", 0, rpcFloor},
		{"rds-2ms", 2 * time.Millisecond, viaGRPC},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newCtrlTestEnv(b, ctrlTestConfig{})
			if bc.latency > 0 {
				e.rds.Inject(rdstest.Latency(`.`, bc.latency))
			}
			ctrlTestInterleave(b, e, size, bc.path)
		})
	}
}

// ctrlTestInterleave times path and the direct baseline alternately and
// reports both and the overhead of path.
func ctrlTestInterleave(b *testing.B, e *ctrlTestEnv, size int64, path func(context.Context, *ctrlTestEnv, string) error) {
	ctx := context.Background()
	var viaPath, direct time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := path(ctx, e, fmt.Sprintf("bench-%d", i)); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		viaPath += mid.Sub(start)

		if err := ctrlTestDirectCreateDelete(ctx, e.client, fmt.Sprintf("bench-direct-%d", i), size); err != nil {
			b.Fatal(err)
		}
		direct += time.Since(mid)
	}
	b.StopTimer()
	b.ReportMetric(float64(viaPath.Nanoseconds())/float64(b.N), "csi-ns/op")
	b.ReportMetric(float64(direct.Nanoseconds())/float64(b.N), "direct-ns/op")
	b.ReportMetric(100*(float64(viaPath)/float64(direct)-1), "overhead-%")
}

// TestBenchmarkBaselineMatches keeps the direct baseline honest: it must
// send exactly the console commands the controller sends.
func TestBenchmarkBaselineMatches(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{})
	ctx := context.Background()
	verbs := func() []string {
		var out []string
		for _, c := range e.rds.Commands() {
			f := strings.Fields(c)
			out = append(out, f[0]+" "+f[1])
		}
		e.rds.ResetCommands()
		return out
	}
	e.rds.ResetCommands()
	r := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("baseline", 16<<20)))(t)
	ctrlTestMust(e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: r.Volume.VolumeId}))(t)
	viaCSI := verbs()

	if err := ctrlTestDirectCreateDelete(ctx, e.client, "baseline-direct", 16<<20); err != nil {
		t.Fatal(err)
	}
	direct := verbs()
	if strings.Join(viaCSI, ",") != strings.Join(direct, ",") {
		t.Errorf("commands differ:\n csi:    %v\n direct: %v", viaCSI, direct)
	}
}

// BenchmarkEmptyRPC is the floor of one unary RPC over the same unix socket
// and interceptor chain: GetPluginInfo does no I/O.
func BenchmarkEmptyRPC(b *testing.B) {
	e := newCtrlTestEnv(b, ctrlTestConfig{})
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.ic.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{}); err != nil {
			b.Fatal(err)
		}
	}
}

// ctrlTestDirectCreateDelete makes, through rdsclient alone, the calls the
// controller makes for CreateVolume(name) and DeleteVolume: create the
// disk, look it up, delete it. TestBenchmarkBaselineMatches checks that
// both send the same commands.
func ctrlTestDirectCreateDelete(ctx context.Context, c *rdsclient.Client, name string, size int64) error {
	id := rdscsi.VolumeIDForName(name)
	if _, err := c.CreateDisk(ctx, rdsclient.DiskSpec{
		Slot:      id,
		FilePath:  ctrlTestVolumePath + "/" + id + ".img",
		SizeBytes: size,
		Export:    &rdsclient.NVMeExport{Port: rdscsi.DefaultNVMePort, NQN: rdscsi.NQN(id)},
	}); err != nil {
		return err
	}
	d, err := c.Disk(ctx, id)
	if err != nil {
		return err
	}
	return c.DeleteDisk(ctx, d)
}
