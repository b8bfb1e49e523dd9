package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/srvlab/rds-csi/attach"
)

func TestNewOTelInvalid(t *testing.T) {
	_, mp := newReader(t)
	if _, err := NewOTel(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil MeterProvider: err %v, want ErrInvalid", err)
	}
	for _, b := range [][]float64{{1, 1}, {2, 1}, {0, math.NaN()}, {math.Inf(1)}} {
		if _, err := NewOTel(mp, WithDurationBuckets(b...)); !errors.Is(err, ErrInvalid) {
			t.Errorf("buckets %v: err %v, want ErrInvalid", b, err)
		}
	}
}

func TestGaugesFollowAttachmentSource(t *testing.T) {
	r, mp := newReader(t)
	cs := &settableCounts{}
	newOTel(t, mp, cs)

	for _, want := range []attach.Counts{
		{},
		{Volumes: 3, NodeAttachments: 4, Migrations: 1},
		{Volumes: 7, NodeAttachments: 9, Migrations: 2, TimedOutMigrations: 1},
		{Volumes: 1, NodeAttachments: 1},
	} {
		cs.set(want)
		if got := collect(t, r).gauges(t); got != want {
			t.Errorf("gauges %+v, want %+v", got, want)
		}
	}
	// A buggy source never makes a gauge negative.
	cs.set(attach.Counts{Volumes: -1, NodeAttachments: -2, Migrations: -3, TimedOutMigrations: -4})
	if got := collect(t, r).gauges(t); got != (attach.Counts{}) {
		t.Errorf("negative counts exported as %+v, want zeros", got)
	}
}

func TestNoGaugesBeforeObserveAttachments(t *testing.T) {
	r, mp := newReader(t)
	o := newOTel(t, mp, nil)
	o.StaleMount(context.Background())
	c := collect(t, r)
	for _, name := range []string{instVolumes, instNodeAttachments, instMigrations, instTimedOut} {
		if _, ok := c[name]; ok {
			t.Errorf("%s present before ObserveAttachments", name)
		}
	}
	if got := c.points(t, "rds_csi.stale_mounts.detected"); got[""] != 1 {
		t.Errorf("stale mounts %v, want 1", got)
	}
	if err := o.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestObserveAttachments: one call registers the gauges and the event
// observer, a second call and a call after Close are refused, and Close
// removes both.
func TestObserveAttachments(t *testing.T) {
	r, mp := newReader(t)
	src := &settableCounts{}
	src.set(attach.Counts{Volumes: 1, NodeAttachments: 1})
	o := newOTel(t, mp, nil)
	if err := o.ObserveAttachments(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil source: err %v, want ErrInvalid", err)
	}
	if err := o.ObserveAttachments(src); err != nil {
		t.Fatalf("ObserveAttachments: %v", err)
	}
	if err := o.ObserveAttachments(src); !errors.Is(err, ErrInvalid) {
		t.Errorf("second call: err %v, want ErrInvalid", err)
	}
	if err := o.ObserveAttachments(&settableCounts{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("second source: err %v, want ErrInvalid", err)
	}
	if n := src.observerCount(); n != 1 {
		t.Fatalf("%d observers added, want 1", n)
	}
	src.emit(attach.Event{Kind: attach.EventConflict})
	src.emit(attach.Event{Kind: attach.EventMigrationTimedOut})
	c := collect(t, r)
	if got := c.gauges(t); got.Volumes != 1 {
		t.Errorf("volumes gauge %d, want 1", got.Volumes)
	}
	if got := c.points(t, "rds_csi.attachment.conflicts"); got[""] != 1 {
		t.Errorf("conflicts %v, want 1", got)
	}
	if got := c.points(t, "rds_csi.migration.migrations"); got["result=timeout"] != 1 {
		t.Errorf("migrations %v, want one timeout", got)
	}

	if err := o.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := src.observerCount(); n != 0 {
		t.Errorf("%d observers left after Close", n)
	}
	if err := o.ObserveAttachments(src); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: err %v, want ErrClosed", err)
	}
	if _, ok := collect(t, r)[instVolumes]; ok {
		t.Error("gauges still collected after Close")
	}
}

func TestCallbackHonoursContext(t *testing.T) {
	_, mp := newReader(t)
	cs := &settableCounts{}
	o := newOTel(t, mp, cs)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// The observer is never touched when ctx is done.
	if err := o.observe(ctx, nil, cs); !errors.Is(err, context.Canceled) {
		t.Errorf("observe with done ctx: %v, want context.Canceled", err)
	}
	if n := cs.calls.Load(); n != 0 {
		t.Errorf("Counts called %d times with a done ctx", n)
	}
}

func TestCloseStopsCallbacksAndRecording(t *testing.T) {
	r, mp := newReader(t)
	cs := &settableCounts{}
	cs.set(attach.Counts{Volumes: 2, NodeAttachments: 2})
	o := newOTel(t, mp, cs)
	ctx := context.Background()

	o.AttachmentConflict(ctx)
	c := collect(t, r)
	if got := c.gauges(t); got.Volumes != 2 {
		t.Fatalf("before Close: volumes %d, want 2", got.Volumes)
	}
	before := cs.calls.Load()
	if before != 1 {
		t.Fatalf("Counts called %d times in one collection, want 1", before)
	}

	if err := o.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	o.AttachmentConflict(ctx)
	o.RPC(ctx, "CreateVolume", "OK", time.Second)

	for i := 0; i < 3; i++ {
		c = collect(t, r)
	}
	if n := cs.calls.Load(); n != before {
		t.Errorf("Counts called %d more times after Close", n-before)
	}
	for _, name := range []string{instVolumes, instNodeAttachments, instMigrations, instTimedOut} {
		if _, ok := c[name]; ok {
			t.Errorf("%s still collected after Close", name)
		}
	}
	if got := c.points(t, "rds_csi.attachment.conflicts"); got[""] != 1 {
		t.Errorf("conflicts after Close %v, want 1 (recording after Close must be a no-op)", got)
	}
	if got := c.points(t, "rds_csi.volume.operations"); len(got) != 0 {
		t.Errorf("RPC after Close recorded %v", got)
	}
}

// TestConcurrentRecording calls every Recorder method from many goroutines
// while collections run; -race checks the rest.
func TestConcurrentRecording(t *testing.T) {
	r, mp := newReader(t)
	cs := &settableCounts{}
	o := newOTel(t, mp, cs)
	ctx := context.Background()
	const workers, iters = 8, 200

	var wg sync.WaitGroup
	stop := make(chan struct{})
	collectorDone := make(chan struct{})
	go func() {
		defer close(collectorDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cs.set(attach.Counts{Volumes: i % 5, NodeAttachments: i % 5})
			var rm metricdata.ResourceMetrics
			if err := r.Collect(ctx, &rm); err != nil {
				t.Errorf("collect: %v", err)
				return
			}
		}
	}()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			addr := fmt.Sprintf("10.0.0.%d:22", w%3)
			for i := 0; i < iters; i++ {
				var rec Recorder = o
				rec.RPC(ctx, "NodeStageVolume", "OK", time.Millisecond)
				rec.RDSCommand(ctx, "disk add", "ok", time.Millisecond)
				rec.RDSConnectionState(ctx, addr, i%2 == 0)
				rec.RDSReconnect(ctx, "ok")
				rec.NVMeConnect(ctx, "ok", time.Millisecond)
				rec.NVMeDisconnect(ctx, "ok", time.Millisecond)
				rec.MountOperation(ctx, "mount", "ok", time.Millisecond)
				rec.StaleMount(ctx)
				rec.AttachmentConflict(ctx)
				rec.Migration(ctx, "success")
				rec.Reconcile(ctx, "kept", 2)
				rec.RDSCommand(ctx, fmt.Sprintf("bogus %d", i), "ok", 0) // rejected: digits
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	<-collectorDone

	c := collect(t, r)
	const n = workers * iters
	for name, want := range map[string]map[string]int64{
		"rds_csi.volume.operations":     {"operation=NodeStageVolume,status=OK": n},
		"rds_csi.rds.reconnect":         {"status=ok": n},
		"rds_csi.nvme.connects":         {"status=ok": n},
		"rds_csi.nvme.disconnects":      {"status=ok": n},
		"rds_csi.mount.operations":      {"operation=mount,status=ok": n},
		"rds_csi.stale_mounts.detected": {"": n},
		"rds_csi.attachment.conflicts":  {"": n},
		"rds_csi.migration.migrations":  {"result=success": n},
		"rds_csi.attachment.reconcile":  {"action=kept": 2 * n},
	} {
		got := c.points(t, name)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	rds := c.histogram(t, "rds_csi.rds.command.duration")
	if len(rds) != 2 || rds["command=disk add,status=ok"].Count != n || rds["command=other,status=ok"].Count != n {
		t.Errorf("rds command histogram series %v", rds)
	}
	if got := c.points(t, "rds_csi.rds.connection.state"); len(got) != 3 {
		t.Errorf("connection state series %v, want 3 addresses", got)
	}
}

func TestLabelSanitising(t *testing.T) {
	r, mp := newReader(t)
	var logs bytes.Buffer
	o := newOTel(t, mp, nil, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	ctx := context.Background()

	o.RPC(ctx, "/csi.v1.Controller/CreateVolume", "OK", 10*time.Millisecond)
	o.RPC(ctx, "CreateVolume", "NotACode", -time.Second) // negative duration -> 0
	o.RPC(ctx, "pvc-0b0e9d3c-volume-id", "OK", 0)
	o.RDSCommand(ctx, "disk add", "weird", 0)
	o.RDSCommand(ctx, `disk remove [find slot="pvc-1"]`, "ok", 0)
	o.RDSCommand(ctx, "interface nvme-tcp connection print", "ok", 0)
	o.MountOperation(ctx, "chmod", "ok", 0)
	o.MountOperation(ctx, "format", "maybe", 0)
	o.Reconcile(ctx, "deleted", 3)
	o.Reconcile(ctx, "cleared", 0)  // nothing
	o.Reconcile(ctx, "cleared", -2) // nothing
	o.Migration(ctx, "started")     // not counted
	o.Migration(ctx, "exploded")
	o.NVMeConnect(ctx, "", 0)
	o.RDSReconnect(ctx, "OK")
	for i := 0; i < maxAddresses+5; i++ {
		o.RDSConnectionState(ctx, fmt.Sprintf("rds-%d.example:22", i), true)
	}
	o.RDSConnectionState(ctx, "bad address\n", true)
	o.RDSConnectionState(ctx, "rds-0.example:22", false) // already known

	c := collect(t, r)
	check := func(name string, want map[string]int64) {
		t.Helper()
		if got := c.points(t, name); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("rds_csi.volume.operations", map[string]int64{
		"operation=CreateVolume,status=OK":    1,
		"operation=CreateVolume,status=other": 1,
		"operation=other,status=OK":           1,
	})
	check("rds_csi.mount.operations", map[string]int64{
		"operation=other,status=ok":     1,
		"operation=format,status=other": 1,
	})
	check("rds_csi.attachment.reconcile", map[string]int64{"action=other": 3})
	check("rds_csi.migration.migrations", map[string]int64{"result=other": 1})
	check("rds_csi.nvme.connects", map[string]int64{"status=other": 1})
	check("rds_csi.rds.reconnect", map[string]int64{"status=other": 1})

	h := c.histogram(t, "rds_csi.volume.operation.duration")
	if p := h["operation=CreateVolume"]; p.Count != 2 || math.Abs(p.Sum-0.01) > 1e-9 {
		t.Errorf("CreateVolume duration count %d sum %v, want 2 and 0.01", p.Count, p.Sum)
	}
	rds := c.histogram(t, "rds_csi.rds.command.duration")
	for _, k := range []string{"command=disk add,status=other", "command=other,status=ok", "command=interface nvme-tcp connection print,status=ok"} {
		if rds[k].Count != 1 {
			t.Errorf("rds command series %q count %d, want 1 (have %v)", k, rds[k].Count, rds)
		}
	}

	state := c.points(t, "rds_csi.rds.connection.state")
	if len(state) != maxAddresses+1 {
		t.Errorf("%d address series, want %d (bounded plus other)", len(state), maxAddresses+1)
	}
	if v, ok := state["address=rds-0.example:22"]; !ok || v != 0 {
		t.Errorf("rds-0 state %v %v, want 0", v, ok)
	}
	if v := state["address=other"]; v != 1 {
		t.Errorf("other address state %d, want 1", v)
	}
	for k := range state {
		if strings.Contains(k, "rds-16") || strings.Contains(k, "bad") {
			t.Errorf("unbounded or malformed address exported: %q", k)
		}
	}

	// One warning per label name and set, not one per call.
	if n := strings.Count(logs.String(), "level=WARN"); n == 0 || n > 12 {
		t.Errorf("%d warnings logged, want one per sanitising label:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "label=address") {
		t.Errorf("address replacement not logged:\n%s", logs.String())
	}
}

func TestValidators(t *testing.T) {
	for s, want := range map[string]bool{
		"disk add": true, "system resource print": true, "interface nvme-tcp print": true,
		"": false, " disk": false, "disk ": false, "disk  add": false, "Disk add": false,
		"disk add slot=x": false, "file remove [find]": false, strings.Repeat("a", maxCommandLen+1): false,
	} {
		if got := validCommand(s); got != want {
			t.Errorf("validCommand(%q) = %v, want %v", s, got, want)
		}
	}
	for s, want := range map[string]bool{
		"10.0.0.1:22": true, "rds.example.com": true, "[fe80::1%eth0]:22": true, "rds_1": true,
		"": false, "a b": false, "x\n": false, "\xff": false, "a/b": false, strings.Repeat("a", maxAddressLen+1): false,
	} {
		if got := validAddress(s); got != want {
			t.Errorf("validAddress(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestNoGoroutines: OTel starts none, so none may be left behind.
func TestNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		r, mp := newReader(t)
		o := newOTel(t, mp, &settableCounts{})
		o.RPC(context.Background(), "Probe", "OK", time.Millisecond)
		collect(t, r)
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("goroutines: %d before, %d after", before, after)
	}
}
