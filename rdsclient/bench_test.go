package rdsclient_test

import (
	"context"
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
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Bool
	b.ResetTimer()
	start := time.Now()
	for range benchCallers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := op(); err != nil {
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
// ssh.Client (the floor). The client variant runs last and reports its
// ratios to the other two.
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

	b.Run("client", func(b *testing.B) {
		c := dial(b, srv)
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
	})
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
