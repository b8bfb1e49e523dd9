package rdsclient_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

// coalesceEnv is a client whose reads queue behind one print at a time:
// WithMaxSessions(2) leaves one session to prints.
func coalesceEnv(t *testing.T, disks int, opts ...rdsclient.Option) (*rdstest.Server, *rdsclient.Client) {
	t.Helper()
	checkLeaks(t)
	srv := newServer(t)
	c := dial(t, srv, append([]rdsclient.Option{rdsclient.WithMaxSessions(2)}, opts...)...)
	ctx := testCtx(t)
	for i := range disks {
		if _, err := c.CreateDisk(ctx, spec(fmt.Sprintf("pvc-co-%d", i), int64(i+1)*mib)); err != nil {
			t.Fatal(err)
		}
	}
	srv.ResetCommands()
	return srv, c
}

// readResult is what one concurrent read returned.
type readResult struct {
	disk rdsclient.Disk
	capy rdsclient.Capacity
	err  error
}

// blockPrints holds every /disk print until release is called, and
// returns once the first one (a lone read of pvc-co-0) is held, so that
// reads started afterwards queue behind it.
func blockPrints(t *testing.T, srv *rdstest.Server, c *rdsclient.Client) (release func(), first <-chan readResult) {
	t.Helper()
	remove := srv.Inject(rdstest.Hang(`^/disk print `))
	res := make(chan readResult, 1)
	ctx, cancel := context.WithCancel(testCtx(t))
	go func() {
		d, err := c.Disk(ctx, "pvc-co-0")
		res <- readResult{disk: d, err: err}
	}()
	if err := srv.WaitCommands(testCtx(t), `^/disk print `, 1); err != nil {
		t.Fatal(err)
	}
	return func() {
		remove()
		cancel() // the held print is abandoned; its caller gets its ctx error
	}, res
}

// TestCoalescedReadsShareOnePrint: reads that arrive while the only print
// allowed runs are answered by one print joining their conditions, each
// caller getting its own answer: its disk, ErrNotFound for a slot that
// does not exist, a pool's capacity.
func TestCoalescedReadsShareOnePrint(t *testing.T) {
	srv, c := coalesceEnv(t, 6)
	release, first := blockPrints(t, srv, c)

	ctx := testCtx(t)
	slots := []string{"pvc-co-1", "pvc-co-2", "pvc-co-3", "pvc-co-3", "pvc-co-5", "pvc-missing"}
	results := make([]readResult, len(slots)+1)
	var wg sync.WaitGroup
	for i, slot := range slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := c.Disk(ctx, slot)
			results[i] = readResult{disk: d, err: err}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		capy, err := c.Capacity(ctx, pool)
		results[len(slots)] = readResult{capy: capy, err: err}
	}()
	// Every read is queued (nothing more reaches the device) before the
	// held print is let go.
	waitQueued(t, c, len(slots)+1)
	if n := len(srv.Commands()); n != 1 {
		t.Fatalf("%d commands reached the device while one print was held, want 1: %q", n, srv.Commands())
	}
	release()
	wg.Wait()
	if r := <-first; !errors.Is(r.err, context.Canceled) {
		t.Errorf("abandoned read: %v, want context.Canceled", r.err)
	}

	for i, slot := range slots {
		r := results[i]
		if slot == "pvc-missing" {
			if !errors.Is(r.err, rdsclient.ErrNotFound) {
				t.Errorf("Disk(%s) = %+v, %v; want ErrNotFound", slot, r.disk, r.err)
			}
			continue
		}
		var n int
		fmt.Sscanf(slot, "pvc-co-%d", &n)
		if r.err != nil || r.disk.Slot != slot || r.disk.SizeBytes != int64(n+1)*mib {
			t.Errorf("Disk(%s) = %+v, %v", slot, r.disk, r.err)
		}
	}
	if r := results[len(slots)]; r.err != nil || r.capy.Pool != pool || r.capy.TotalBytes <= 0 {
		t.Errorf("Capacity = %+v, %v", r.capy, r.err)
	}

	cmds := srv.Commands()
	if len(cmds) != 2 {
		t.Fatalf("commands %q, want the held print and one coalesced print", cmds)
	}
	want := `/disk print detail where slot="pvc-co-1" or slot="pvc-co-2" or slot="pvc-co-3" or slot="pvc-co-5" or slot="pvc-missing" or mount-point="storage-pool"`
	if got := cmds[1]; !sameTerms(got, want) {
		t.Errorf("coalesced print\n %s\nwant the conditions of\n %s", got, want)
	}
}

// sameTerms compares two combined prints by their set of conditions:
// concurrent callers queue in no fixed order.
func sameTerms(a, b string) bool {
	terms := func(s string) map[string]bool {
		_, cond, _ := strings.Cut(s, " where ")
		m := map[string]bool{}
		for _, t := range strings.Split(cond, " or ") {
			m[t] = true
		}
		return m
	}
	ta, tb := terms(a), terms(b)
	if len(ta) != len(tb) {
		return false
	}
	for k := range ta {
		if !tb[k] {
			return false
		}
	}
	return true
}

// TestCoalescedReadsBounded: one print carries at most the configured
// number of conditions; the rest go in the next print, and every caller
// is still answered.
func TestCoalescedReadsBounded(t *testing.T) {
	srv, c := coalesceEnv(t, 11, rdsclient.WithCoalescedReads(4))
	release, _ := blockPrints(t, srv, c)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := c.Disk(ctx, fmt.Sprintf("pvc-co-%d", i+1))
			if err == nil && d.SizeBytes != int64(i+2)*mib {
				err = fmt.Errorf("size %d", d.SizeBytes)
			}
			errs[i] = err
		}()
	}
	waitQueued(t, c, 10)
	release()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("read %d: %v", i+1, err)
		}
	}
	cmds := srv.Commands()[1:]
	if len(cmds) != 3 {
		t.Errorf("10 queued reads took %d prints, want 3 (4+4+2): %q", len(cmds), cmds)
	}
	for _, cmd := range cmds {
		if n := strings.Count(cmd, " or ") + 1; n > 4 {
			t.Errorf("print with %d conditions, at most 4 allowed: %s", n, cmd)
		}
	}
}

// TestCoalescedReadCallerContext: a caller whose context ends stops
// waiting at once, whether its read is queued or in a print; the others
// of that print are answered.
func TestCoalescedReadCallerContext(t *testing.T) {
	srv, c := coalesceEnv(t, 3)
	release, _ := blockPrints(t, srv, c)

	// Queued: gives up before any print carries it.
	qctx, qcancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer qcancel()
	start := time.Now()
	_, err := c.Disk(qctx, "pvc-co-1")
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, rdsclient.ErrUnavailable) {
		t.Errorf("queued read past its deadline: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("queued read returned after %v", d)
	}

	// In one print with another caller, which stays.
	gctx, gcancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		_, err := c.Disk(gctx, "pvc-co-1")
		gone <- err
	}()
	stay := make(chan readResult, 1)
	go func() {
		d, err := c.Disk(testCtx(t), "pvc-co-2")
		stay <- readResult{disk: d, err: err}
	}()
	waitQueued(t, c, 2)
	// Let the held print go, hold the next one (which carries both).
	srv.Inject(rdstest.Latency(`^/disk print .* or `, 300*time.Millisecond))
	release()
	if err := srv.WaitCommands(testCtx(t), ` or `, 1); err != nil {
		t.Fatal(err)
	}
	gcancel()
	select {
	case err := <-gone:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled caller: %v", err)
		}
	case <-time.After(200 * time.Millisecond):
		t.Error("a cancelled caller waited for its print")
	}
	r := <-stay
	if r.err != nil || r.disk.Slot != "pvc-co-2" {
		t.Errorf("the caller that stayed: %+v, %v", r.disk, r.err)
	}
	if queued := srv.Commands(); strings.Count(strings.Join(queued, "\n"), `slot="pvc-co-1"`) != 1 {
		t.Errorf("the read that gave up while queued was sent anyway: %q", queued)
	}
}

// TestCoalescedPrintFailure: a failing print fails every read it
// carries, never as "not found"; an entry that answers no condition
// asked makes the whole print untrustworthy.
func TestCoalescedPrintFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  rdstest.Fault
		wantIs error
	}{
		{"syntax error", rdstest.FailNth(` or `, 1, "syntax error (line 1 column 30)"), rdsclient.ErrInvalid},
		{"failure text", rdstest.FailNth(` or `, 1, "failure: something nobody has seen"), rdsclient.ErrUnexpectedOutput},
		{"foreign entry", rdstest.AnswerNth(` or `, 1, "Flags: X - disabled\r\n 0  type=file slot=\"pvc-other\" size=1 048 576\r\n               file-path=/storage-pool/k8s/pvc-other.img\r\n", 0), rdsclient.ErrUnexpectedOutput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, c := coalesceEnv(t, 3)
			release, _ := blockPrints(t, srv, c)
			srv.Inject(tc.fault)
			ctx := testCtx(t)
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = c.Disk(ctx, fmt.Sprintf("pvc-co-%d", i+1))
				}()
			}
			waitQueued(t, c, 2)
			release()
			wg.Wait()
			for i, err := range errs {
				if !errors.Is(err, tc.wantIs) || errors.Is(err, rdsclient.ErrNotFound) {
					t.Errorf("read %d: %v, want %v", i+1, err, tc.wantIs)
				}
			}
			if !strings.Contains(strings.Join(srv.Commands(), "\n"), " or ") {
				t.Fatalf("no coalesced print was sent: %q", srv.Commands())
			}
			// The next reads are unaffected.
			if d, err := c.Disk(ctx, "pvc-co-1"); err != nil || d.Slot != "pvc-co-1" {
				t.Errorf("read after the failure: %+v, %v", d, err)
			}
		})
	}
}

// TestCoalescedHungPrintDelaysOnlyItsReads: with prints to spare, a read
// arriving while one print hangs is sent at once, not queued behind it.
func TestCoalescedHungPrintDelaysOnlyItsReads(t *testing.T) {
	checkLeaks(t)
	srv := newServer(t)
	c := dial(t, srv) // default sessions: four prints at once
	ctx := testCtx(t)
	for _, slot := range []string{"pvc-hang", "pvc-ok"} {
		if _, err := c.CreateDisk(ctx, spec(slot, mib)); err != nil {
			t.Fatal(err)
		}
	}
	srv.Inject(rdstest.Hang(`pvc-hang`))
	hctx, hcancel := context.WithCancel(ctx)
	hung := make(chan error, 1)
	go func() {
		_, err := c.Disk(hctx, "pvc-hang")
		hung <- err
	}()
	if err := srv.WaitCommands(ctx, `pvc-hang`, 1); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if d, err := c.Disk(ctx, "pvc-ok"); err != nil || d.Slot != "pvc-ok" {
			t.Fatalf("read beside a hung print: %+v, %v", d, err)
		}
	}
	select {
	case err := <-hung:
		t.Fatalf("the hung read returned: %v", err)
	default:
	}
	hcancel()
	if err := <-hung; !errors.Is(err, context.Canceled) {
		t.Errorf("hung read after cancel: %v", err)
	}
}

// TestCoalescingOff: WithCoalescedReads(1) sends one print per read, as
// soon as a session is free.
func TestCoalescingOff(t *testing.T) {
	srv, c := coalesceEnv(t, 4, rdsclient.WithCoalescedReads(1))
	srv.Inject(rdstest.Hang(`pvc-co-0`))
	ctx := testCtx(t)
	hctx, hcancel := context.WithCancel(ctx)
	hung := make(chan error, 1)
	go func() {
		_, err := c.Disk(hctx, "pvc-co-0")
		hung <- err
	}()
	if err := srv.WaitCommands(ctx, `pvc-co-0`, 1); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d, err := c.Disk(ctx, fmt.Sprintf("pvc-co-%d", i+1)); err != nil || d.SizeBytes != int64(i+2)*mib {
				t.Errorf("read %d: %+v, %v", i+1, d, err)
			}
		}()
	}
	wg.Wait() // on the one session left, beside the hung print
	hcancel()
	<-hung
	cmds := srv.Commands()
	if len(cmds) != 4 {
		t.Errorf("4 reads sent %d prints, want 4: %q", len(cmds), cmds)
	}
	for _, cmd := range cmds {
		if strings.Contains(cmd, " or ") {
			t.Errorf("coalesced print with coalescing off: %s", cmd)
		}
	}
}

// waitQueued waits until n reads wait for a print.
func waitQueued(t *testing.T, c *rdsclient.Client, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.QueuedReads() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d reads queued after 10s, want %d", c.QueuedReads(), n)
		}
		time.Sleep(time.Millisecond)
	}
}
