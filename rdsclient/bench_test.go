package rdsclient_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

// benchCallers is the number of concurrent callers in every variant.
const benchCallers = 8

// parallel runs op b.N times in total, spread over benchCallers
// goroutines, and reports the throughput. It returns ops/s.
func parallel(b *testing.B, op func() error) float64 {
	b.Helper()
	return parallelN(b, benchCallers, func(int) error { return op() })
}

// parallelN runs op b.N times in total, spread over n goroutines (op gets
// the number of its goroutine), and reports the throughput as ops/s,
// which it returns.
func parallelN(b *testing.B, n int, op func(caller int) error) float64 {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Bool
	b.ResetTimer()
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := op(i); err != nil {
					if failed.CompareAndSwap(false, true) {
						b.Error(err)
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	opsPerSec := float64(b.N) / elapsed.Seconds()
	b.ReportMetric(opsPerSec, "ops/s")
	return opsPerSec
}

// BenchmarkDiskRead compares reading one disk with 8 concurrent callers:
// through a Client (one connection, multiplexed sessions), with a new SSH
// connection per command, and with raw sessions over one shared
// ssh.Client (the floor). The client variants run last and report their
// ratios to the other two, and the commands the fake received per read:
// with coalesced reads (the default) reads that find as many prints in
// flight as half the sessions share the next, so at most one and fewer
// under load; with WithCoalescedReads(1) exactly one.
func BenchmarkDiskRead(b *testing.B) {
	srv := newServer(b)
	cfg := srv.ClientConfig()
	ctx := context.Background()
	const slot = "pvc-bench"
	setup := dial(b, srv)
	if _, err := setup.CreateDisk(ctx, spec(slot, 10*gib)); err != nil {
		b.Fatal(err)
	}
	const line = `/disk print detail where slot="` + slot + `"`
	sshConf := &ssh.ClientConfig{User: cfg.User + "+ct", Auth: cfg.Auth, HostKeyCallback: cfg.HostKeyCallback}

	var dialPerCommand, raw float64

	b.Run("dial-per-command", func(b *testing.B) {
		fresh(srv)
		dialPerCommand = parallel(b, func() error {
			sc, err := ssh.Dial("tcp", srv.Addr(), sshConf)
			if err != nil {
				return err
			}
			defer sc.Close()
			return runRaw(sc, line)
		})
	})

	b.Run("raw-session", func(b *testing.B) {
		sc, err := ssh.Dial("tcp", srv.Addr(), sshConf)
		if err != nil {
			b.Fatal(err)
		}
		defer sc.Close()
		fresh(srv)
		raw = parallel(b, func() error { return runRaw(sc, line) })
	})

	for _, v := range []struct {
		name string
		opts []rdsclient.Option
	}{
		{"client", nil},
		{"client-uncoalesced", []rdsclient.Option{rdsclient.WithCoalescedReads(1)}},
	} {
		b.Run(v.name, func(b *testing.B) {
			c := dial(b, srv, v.opts...)
			fresh(srv)
			ops := parallel(b, func() error {
				d, err := c.Disk(ctx, slot)
				if err == nil && d.SizeBytes != 10*gib {
					b.Errorf("size %d", d.SizeBytes)
				}
				return err
			})
			if raw > 0 {
				b.ReportMetric(ops/raw, "x-raw")
			}
			if dialPerCommand > 0 {
				b.ReportMetric(ops/dialPerCommand, "x-dial")
			}
			b.ReportMetric(float64(len(srv.Commands()))/float64(b.N), "cmds/op")
		})
	}
}

// fresh gives every variant the same starting point: an empty command
// log in the fake and no garbage left by the previous variant.
func fresh(srv *rdstest.Server) {
	srv.ResetCommands()
	runtime.GC()
}

func runRaw(sc *ssh.Client, line string) error {
	sess, err := sc.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	out, err := sess.Output(line)
	if err == nil && len(out) == 0 {
		return rdsclient.ErrNotFound
	}
	return err
}

// BenchmarkCoalescedReads: 64 concurrent callers, each reading its own
// disk with Disk, against a fake answering every command after 2 ms (a
// device across a network), with the default session limit. one-per-read
// (WithCoalescedReads(1)) sends a print per read; coalesced (the default)
// lets reads that arrive while the prints it allows are busy share the
// next one. coalesced runs second and reports its throughput as a ratio
// to one-per-read (x-one-per-read), beside the commands the device saw
// per read (ops/s is reads per second).
//
//	go test -run '^$' -bench BenchmarkCoalescedReads -benchtime 4000x -count 3 ./rdsclient/
func BenchmarkCoalescedReads(b *testing.B) {
	const callers = 64
	srv := newServer(b)
	ctx := context.Background()
	setup := dial(b, srv)
	slots := make([]string, callers)
	for i := range slots {
		slots[i] = fmt.Sprintf("pvc-read-%d", i)
		if _, err := setup.CreateDisk(ctx, spec(slots[i], gib)); err != nil {
			b.Fatal(err)
		}
	}
	srv.Inject(rdstest.Latency(`.`, 2*time.Millisecond))
	var onePerRead float64
	for _, v := range []struct {
		name string
		opts []rdsclient.Option
	}{
		{"one-per-read", []rdsclient.Option{rdsclient.WithCoalescedReads(1)}},
		{"coalesced", nil},
	} {
		b.Run(v.name, func(b *testing.B) {
			c := dial(b, srv, v.opts...)
			fresh(srv)
			ops := parallelN(b, callers, func(i int) error {
				d, err := c.Disk(ctx, slots[i])
				if err == nil && d.Slot != slots[i] {
					err = fmt.Errorf("read %s, got %s", slots[i], d.Slot)
				}
				return err
			})
			b.ReportMetric(float64(len(srv.Commands()))/float64(b.N), "cmds/read")
			if v.name == "one-per-read" {
				onePerRead = ops
			} else if onePerRead > 0 {
				b.ReportMetric(ops/onePerRead, "x-one-per-read")
			}
		})
	}
}
