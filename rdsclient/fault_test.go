package rdsclient_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

// readModes are the two ways reads by slot and of pools run: coalesced
// (the default) and one command per read.
var readModes = []struct {
	name string
	opts []rdsclient.Option
}{
	{"coalesced", nil},
	{"uncoalesced", []rdsclient.Option{rdsclient.WithCoalescedReads(1)}},
}

func TestHungCommandObeysContext(t *testing.T) {
	for _, m := range readModes {
		t.Run(m.name, func(t *testing.T) { testHungCommandObeysContext(t, m.opts...) })
	}
}

func testHungCommandObeysContext(t *testing.T, opts ...rdsclient.Option) {
	checkLeaks(t)
	srv := newServer(t)
	obs := newObserver()
	c := dial(t, srv, append(opts, rdsclient.WithObserver(obs))...)

	remove := srv.Inject(rdstest.Hang(`^/disk print`))
	const timeout = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	_, err := c.Disk(ctx, "pvc-hang")
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, rdsclient.ErrUnavailable) {
		t.Fatalf("Disk on a hung command = %v, want DeadlineExceeded and ErrUnavailable", err)
	}
	// The fake ends a hung command as soon as its session is closed, so
	// the call returns right at the deadline; the margin is for slow CI.
	if elapsed > timeout+time.Second {
		t.Errorf("hung call returned after %v, deadline was %v", elapsed, timeout)
	}

	// A caller that cancels (no deadline) while its command hangs is
	// released too.
	ctx2, cancel2 := context.WithCancel(context.Background())
	listed := make(chan error, 1)
	go func() {
		_, err := c.Disks(ctx2, "pvc-")
		listed <- err
	}()
	waitCommands(t, srv, `^/disk print detail where slot~`, 1)
	cancel2()
	if err := <-listed; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Disks = %v, want context.Canceled", err)
	}

	// The hung sessions were closed: the fake's handlers for them end,
	// the connection stays up and is reused (no re-dial).
	idleCtx, cancelIdle := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancelIdle()
	if err := srv.WaitIdle(idleCtx); err != nil {
		t.Errorf("the fake still serves the abandoned sessions: %v", err)
	}
	remove()
	if err := c.Ping(testCtx(t)); err != nil {
		t.Fatalf("Ping after hang: %v", err)
	}
	if n := obs.reconnectCount("ok") + obs.reconnectCount("error"); n != 0 {
		t.Errorf("%d re-dials: a closed session must not cost the connection", n)
	}
	// The read's print is reported as a timeout in both modes: an
	// uncoalesced print runs under its caller's context and times out
	// with it; a coalesced one runs for every caller it serves and is
	// cancelled when the last has gone, with that caller's deadline as
	// the cause. It is reported by the print's goroutine, which may
	// still be on its way when the caller has returned, hence the wait.
	// The cancelled Disks is a failed print, but not a timeout.
	obs.waitFor(t, "both failed prints", func() bool {
		return obs.commands["disk print timeout"]+obs.commands["disk print unavailable"] >= 2
	})
	timeouts, unavailable := obs.commandCount("disk print timeout"), obs.commandCount("disk print unavailable")
	if timeouts != 1 || unavailable != 1 || obs.commandCount("disk print ok") != 0 {
		t.Errorf("observer saw %d disk print timeouts and %d unavailable, want 1 of each (%v)", timeouts, unavailable, obs.commands)
	}
}

func TestCommandTimeoutDefault(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv, rdsclient.WithCommandTimeout(150*time.Millisecond))
	srv.Inject(rdstest.Hang(`^/system identity`))
	start := time.Now()
	err := c.Ping(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ping = %v, want DeadlineExceeded from the default command timeout", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Ping took %v", d)
	}
}

func TestTransparentReconnect(t *testing.T) {
	checkLeaks(t)
	srv := newServer(t)
	obs := newObserver()
	c := dial(t, srv, rdsclient.WithObserver(obs))
	ctx := testCtx(t)
	if _, err := c.CreateDisk(ctx, spec("pvc-rc", gib)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		srv.DropConnections()
		if _, err := c.Disk(ctx, "pvc-rc"); err != nil {
			t.Fatalf("Disk after drop %d: %v", i, err)
		}
	}
	if n := obs.reconnectCount("ok"); n != 3 {
		t.Errorf("reconnects ok = %d, want 3", n)
	}
	states := obs.stateLog()
	if len(states) != 7 || !states[0] || !states[6] {
		t.Errorf("connection states = %v, want up and 3x down/up", states)
	}
}

func TestConcurrentCallersShareOneRedial(t *testing.T) {
	srv := newServer(t)
	obs := newObserver()
	c := dial(t, srv, rdsclient.WithObserver(obs), rdsclient.WithMaxSessions(16))
	ctx := testCtx(t)
	srv.DropConnections()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- c.Ping(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Ping: %v", err)
		}
	}
	// One drop may be seen a little late by a caller, but 32 callers
	// must not cause 32 dials.
	if n := obs.reconnectCount("ok"); n < 1 || n > 2 {
		t.Errorf("%d re-dials for one drop", n)
	}
}

func TestRefusedThenRecovers(t *testing.T) {
	checkLeaks(t)
	srv := newServer(t)
	obs := newObserver()
	c := dial(t, srv, rdsclient.WithObserver(obs), rdsclient.WithRetry(8, 40*time.Millisecond))
	ctx := testCtx(t)

	srv.RefuseConnections(true)
	srv.DropConnections()
	pinged := make(chan error, 1)
	go func() { pinged <- c.Ping(ctx) }()
	// Connections are allowed again once a re-dial has been refused,
	// while the Ping is still within its retry budget.
	obs.waitFor(t, "a refused re-dial", func() bool { return obs.reconnects["error"] >= 1 })
	select {
	case err := <-pinged:
		t.Fatalf("Ping returned while connections were refused: %v", err)
	default:
	}
	srv.RefuseConnections(false)
	if err := <-pinged; err != nil {
		t.Fatalf("Ping did not recover within the retry budget: %v", err)
	}
	if obs.reconnectCount("error") < 1 || obs.reconnectCount("ok") != 1 {
		t.Errorf("reconnects = %v", obs.reconnects)
	}
}

func TestRetryBudgetIsBounded(t *testing.T) {
	srv := newServer(t)
	obs := newObserver()
	c := dial(t, srv, rdsclient.WithObserver(obs), rdsclient.WithRetry(3, 10*time.Millisecond))
	srv.RefuseConnections(true)
	srv.DropConnections()
	// Wait until the client has seen the drop, so that every attempt
	// is a dial.
	obs.waitFor(t, "the drop", func() bool { return len(obs.states) >= 2 })
	err := c.Ping(testCtx(t))
	if !errors.Is(err, rdsclient.ErrUnavailable) {
		t.Fatalf("Ping while refused = %v, want ErrUnavailable", err)
	}
	if n := obs.reconnectCount("error"); n != 3 {
		t.Errorf("%d failed re-dials, want exactly 3 (the attempt budget); last error: %v", n, err)
	}
	// Permanent failures are not retried at all.
	srv.RefuseConnections(false)
	srv.Inject(rdstest.FailAlways(`^/system identity`, "bad command name identity (line 1 column 9)"))
	srv.ResetCommands()
	if err := c.Ping(testCtx(t)); !errors.Is(err, rdsclient.ErrInvalid) {
		t.Fatalf("Ping = %v, want ErrInvalid", err)
	}
	if n := countCommands(srv, "/system identity"); n != 1 {
		t.Errorf("a command failure was sent %d times", n)
	}
}

func TestReadRetriedAfterDrop(t *testing.T) {
	for _, tc := range readModes {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			c := dial(t, srv, tc.opts...)
			ctx := testCtx(t)
			if _, err := c.CreateDisk(ctx, spec("pvc-rd", gib)); err != nil {
				t.Fatal(err)
			}
			srv.Inject(rdstest.DropAfterRun(`^/disk print`, 1))
			srv.ResetCommands()
			d, err := c.Disk(ctx, "pvc-rd")
			if err != nil || d.Slot != "pvc-rd" {
				t.Fatalf("Disk = %+v, %v", d, err)
			}
			if n := countCommands(srv, "/disk print"); n != 2 {
				t.Errorf("read sent %d times, want 2 (reads are repeated)", n)
			}
		})
	}
}

func TestUnknownOutcomeAddResolvedByReadBack(t *testing.T) {
	checkLeaks(t)
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	s := spec("pvc-unknown", gib)
	// The add runs, then the connection drops before the answer.
	srv.Inject(rdstest.DropAfterRun(`^/disk add`, 1))
	d, err := c.CreateDisk(ctx, s)
	if err != nil {
		t.Fatalf("CreateDisk with dropped answer: %v", err)
	}
	if d.Slot != s.Slot || d.SizeBytes != gib {
		t.Errorf("disk = %+v", d)
	}
	// Only an unknown outcome costs a read-back.
	want := []string{`/disk add `, `/disk print detail where slot="pvc-unknown"`}
	if cmds := srv.Commands(); len(cmds) != 2 || !strings.HasPrefix(cmds[0], want[0]) || cmds[1] != want[1] {
		t.Errorf("commands %q, want the add and one read-back; an add that happened must not be repeated", cmds)
	}
}

func TestUnknownOutcomeAddRetriedWhenAbsent(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	s := spec("pvc-lost", gib)
	// The add is abandoned by the fake before it runs because the
	// connection goes away while the command hangs.
	removeHang := srv.Inject(rdstest.Hang(`^/disk add`))
	go func() {
		if srv.WaitCommands(ctx, `^/disk add`, 1) == nil {
			removeHang()
			srv.DropConnections()
		}
	}()
	d, err := c.CreateDisk(ctx, s)
	if err != nil {
		t.Fatalf("CreateDisk: %v", err)
	}
	if d.Slot != s.Slot {
		t.Errorf("disk = %+v", d)
	}
	cmds := srv.Commands()
	var adds, readsBetween int
	for _, cmd := range cmds {
		switch {
		case strings.HasPrefix(cmd, "/disk add"):
			adds++
		case adds == 1 && strings.HasPrefix(cmd, "/disk print"):
			readsBetween++
		}
	}
	if adds != 2 || readsBetween == 0 {
		t.Errorf("commands %q: want add, read-back, add", cmds)
	}
}

func TestUnknownOutcomeOtherMutations(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	if _, err := c.CreateDisk(ctx, spec("pvc-mut", gib)); err != nil {
		t.Fatal(err)
	}
	cur := mustDisk(t, c, "pvc-mut")
	srv.ResetCommands()
	// Each mutation runs, then the connection drops before its answer:
	// each is resolved by one read, and none is sent again.
	srv.Inject(rdstest.DropAfterRun(`^/disk set`, 1))
	d, err := c.ResizeDisk(ctx, cur, 2*gib)
	if err != nil || d.SizeBytes != 2*gib {
		t.Fatalf("ResizeDisk = %+v, %v", d, err)
	}
	srv.Inject(rdstest.DropAfterRun(`^/disk remove`, 1))
	srv.Inject(rdstest.DropAfterRun(`^/file remove`, 1))
	if err := c.DeleteDisk(ctx, d); err != nil {
		t.Fatalf("DeleteDisk: %v", err)
	}
	want := []string{
		`/disk set [find slot="pvc-mut"] file-size=2G`,
		`/disk print detail where slot="pvc-mut"`,
		`/disk remove [find slot="pvc-mut"]`,
		`/disk print detail where slot="pvc-mut"`,
		`/file remove [find name="storage-pool/k8s/pvc-mut.img"]`,
		`/file print detail where name="storage-pool/k8s/pvc-mut.img"`,
	}
	if got := srv.Commands(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := srv.DiskFile("pvc-mut"); err == nil {
		t.Errorf("disk still known to the fake")
	}
}

// TestUnknownOutcomeNotRun: a mutation that the connection drop kept from
// running is sent once more after the read-back shows it did not happen
// (resize, delete), and the repeated one is read back like any other.
func TestUnknownOutcomeNotRun(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	cur, err := c.CreateDisk(ctx, spec("pvc-nr", gib))
	if err != nil {
		t.Fatal(err)
	}
	srv.ResetCommands()
	unknownOutcome(t, srv, `^/disk set`)
	d, err := c.ResizeDisk(ctx, cur, 2*gib)
	if err != nil || d.SizeBytes != 2*gib {
		t.Fatalf("ResizeDisk = %+v, %v", d, err)
	}
	if got := mustDisk(t, c, "pvc-nr"); got.SizeBytes != 2*gib {
		t.Errorf("disk after the repeated set = %+v", got)
	}
	want := []string{
		`/disk set [find slot="pvc-nr"] file-size=2G`,
		`/disk print detail where slot="pvc-nr"`,
		`/disk set [find slot="pvc-nr"] file-size=2G`,
		`/disk print detail where slot="pvc-nr"`, // the repeated set's read-back
		`/disk print detail where slot="pvc-nr"`, // mustDisk
	}
	if got := srv.Commands(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	srv.ResetCommands()
	unknownOutcome(t, srv, `^/disk remove`)
	if err := c.DeleteDisk(ctx, d); err != nil {
		t.Fatalf("DeleteDisk: %v", err)
	}
	want = []string{
		`/disk remove [find slot="pvc-nr"]`,
		`/disk print detail where slot="pvc-nr"`,
		`/disk remove [find slot="pvc-nr"]`,
		`/disk print detail where slot="pvc-nr"`, // the repeated remove's read-back
		`/file remove [find name="storage-pool/k8s/pvc-nr.img"]`,
	}
	if got := srv.Commands(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := srv.DiskFile("pvc-nr"); err == nil {
		t.Errorf("disk still known to the fake")
	}
}

// TestUnknownOutcomeRepeatedOnce: a mutation whose outcome stays unknown
// is sent at most twice. When the repeated one's outcome is unknown too
// and the read-back shows it did not happen, the call fails with the
// transport error, and nothing after it (a delete's file remove) is sent.
func TestUnknownOutcomeRepeatedOnce(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	cur, err := c.CreateDisk(ctx, spec("pvc-twice", gib))
	if err != nil {
		t.Fatal(err)
	}
	file := mustDiskFile(t, srv, "pvc-twice")
	sent := func(want ...string) {
		t.Helper()
		if got := srv.Commands(); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	const readBack = `/disk print detail where slot="pvc-twice"`

	srv.ResetCommands()
	unknownOutcomes(t, srv, `^/disk set`, 2)
	if d, err := c.ResizeDisk(ctx, cur, 2*gib); !errors.Is(err, rdsclient.ErrUnavailable) {
		t.Errorf("ResizeDisk with two unknown outcomes = %+v, %v; want ErrUnavailable", d, err)
	}
	set := `/disk set [find slot="pvc-twice"] file-size=2G`
	sent(set, readBack, set, readBack)

	srv.ResetCommands()
	unknownOutcomes(t, srv, `^/disk remove`, 2)
	if err := c.DeleteDisk(ctx, cur); !errors.Is(err, rdsclient.ErrUnavailable) {
		t.Errorf("DeleteDisk with two unknown outcomes = %v, want ErrUnavailable", err)
	}
	remove := `/disk remove [find slot="pvc-twice"]`
	sent(remove, readBack, remove, readBack)

	// Neither ran.
	if d := mustDisk(t, c, "pvc-twice"); d.SizeBytes != gib {
		t.Errorf("disk after the failed resize = %+v, want 1 GiB", d)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("backing file after the failed delete: %v", err)
	}
}

func TestHostKeyPolicy(t *testing.T) {
	checkLeaks(t)
	srv := newServer(t)
	ctx := testCtx(t)

	t.Run("missing callback", func(t *testing.T) {
		cfg := srv.ClientConfig()
		cfg.HostKeyCallback = nil
		_, err := rdsclient.Dial(ctx, srv.Addr(), cfg)
		if !errors.Is(err, rdsclient.ErrInvalid) {
			t.Fatalf("Dial without HostKeyCallback = %v, want ErrInvalid", err)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		srv.ResetCommands()
		other := newKey(t).PublicKey()
		cfg := srv.ClientConfig()
		var mu sync.Mutex
		calls := 0
		pinned := rdsclient.FixedHostKey(other)
		cfg.HostKeyCallback = func(host string, remote net.Addr, key ssh.PublicKey) error {
			mu.Lock()
			calls++
			mu.Unlock()
			return pinned(host, remote, key)
		}
		_, err := rdsclient.Dial(ctx, srv.Addr(), cfg, rdsclient.WithRetry(5, time.Millisecond))
		var he *rdsclient.HostKeyError
		if !errors.As(err, &he) || errors.Is(err, rdsclient.ErrUnavailable) || !strings.Contains(err.Error(), "host key") {
			t.Fatalf("Dial with a wrong host key = %v, want a *HostKeyError that is not ErrUnavailable", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if calls != 1 {
			t.Errorf("host key checked %d times: a refused host key must not be retried", calls)
		}
		if cmds := srv.Commands(); len(cmds) != 0 {
			t.Errorf("commands sent: %q", cmds)
		}
	})
	t.Run("from line", func(t *testing.T) {
		line := string(ssh.MarshalAuthorizedKey(srv.HostKey()))
		for _, l := range []string{line, strings.TrimSpace(line) + " rds@lab", "rds.lab,10.0.0.1 " + line} {
			cb, err := rdsclient.HostKeyFromLine(l)
			if err != nil {
				t.Fatalf("HostKeyFromLine(%q): %v", l, err)
			}
			cfg := srv.ClientConfig()
			cfg.HostKeyCallback = cb
			c, err := rdsclient.Dial(ctx, srv.Addr(), cfg)
			if err != nil {
				t.Fatalf("Dial with key from %q: %v", l, err)
			}
			c.Close()
		}
		wrong := string(ssh.MarshalAuthorizedKey(newKey(t).PublicKey()))
		cb, err := rdsclient.HostKeyFromLine(wrong)
		if err != nil {
			t.Fatal(err)
		}
		cfg := srv.ClientConfig()
		cfg.HostKeyCallback = cb
		if _, err := rdsclient.Dial(ctx, srv.Addr(), cfg); err == nil {
			t.Errorf("Dial accepted a host key other than the pinned one")
		}
		for _, bad := range []string{"", "ssh-ed25519", "ssh-ed25519 !!!notbase64", "garbage"} {
			if _, err := rdsclient.HostKeyFromLine(bad); !errors.Is(err, rdsclient.ErrInvalid) {
				t.Errorf("HostKeyFromLine(%q) = %v, want ErrInvalid", bad, err)
			}
		}
	})
	t.Run("known hosts", func(t *testing.T) {
		dir := t.TempDir()
		good := filepath.Join(dir, "good")
		bad := filepath.Join(dir, "bad")
		host := knownhosts.Normalize(srv.Addr())
		writeFile(t, good, knownhosts.Line([]string{host}, srv.HostKey())+"\n")
		writeFile(t, bad, knownhosts.Line([]string{host}, newKey(t).PublicKey())+"\n")
		for _, tc := range []struct {
			file string
			ok   bool
		}{{good, true}, {bad, false}} {
			cb, err := rdsclient.KnownHosts(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			cfg := srv.ClientConfig()
			cfg.HostKeyCallback = cb
			c, err := rdsclient.Dial(ctx, srv.Addr(), cfg, rdsclient.WithRetry(1, 0))
			if (err == nil) != tc.ok {
				t.Errorf("Dial with %s: %v", filepath.Base(tc.file), err)
			}
			if c != nil {
				c.Close()
			}
		}
		if _, err := rdsclient.KnownHosts(filepath.Join(dir, "missing")); err == nil {
			t.Errorf("KnownHosts of a missing file succeeded")
		}
	})
}

func TestClientAuthRefused(t *testing.T) {
	checkLeaks(t)
	srv := newServer(t)
	ctx := testCtx(t)

	cfg := srv.ClientConfig()
	cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(newKey(t))}
	var ae *rdsclient.AuthError
	if _, err := rdsclient.Dial(ctx, srv.Addr(), cfg); !errors.As(err, &ae) || errors.Is(err, rdsclient.ErrUnavailable) {
		t.Errorf("Dial with an unknown client key = %v, want an *AuthError that is not ErrUnavailable", err)
	}

	// The key becomes known: it works.
	key := newKey(t)
	srv.AuthorizeKey(key.PublicKey())
	cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(key)}
	c, err := rdsclient.Dial(ctx, srv.Addr(), cfg)
	if err != nil {
		t.Fatalf("Dial with an authorised key: %v", err)
	}
	c.Close()

	srv.RejectAuth(true)
	defer srv.RejectAuth(false)
	if _, err := rdsclient.Dial(ctx, srv.Addr(), srv.ClientConfig()); !errors.As(err, &ae) {
		t.Errorf("Dial while the server rejects authentication = %v, want an *AuthError", err)
	}
	if cmds := srv.Commands(); len(cmds) != 0 {
		t.Errorf("commands sent: %q", cmds)
	}
}

func TestDialHonoursContextAndTimeout(t *testing.T) {
	// A listener that accepts and never speaks SSH.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns sync.WaitGroup
	conns.Add(1)
	go func() {
		defer conns.Done()
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	defer conns.Wait()
	defer ln.Close()

	srv := newServer(t)
	cfg := srv.ClientConfig()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = rdsclient.Dial(ctx, ln.Addr().String(), cfg)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial to a silent server = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Dial took %v with a 150ms context", d)
	}

	start = time.Now()
	_, err = rdsclient.Dial(context.Background(), ln.Addr().String(), cfg,
		rdsclient.WithRetry(2, 10*time.Millisecond), rdsclient.WithDialTimeout(100*time.Millisecond))
	if !errors.Is(err, rdsclient.ErrUnavailable) {
		t.Errorf("Dial with WithDialTimeout = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Dial took %v with 2 x 100ms WithDialTimeout", d)
	}
}

func TestCloseWaitsAndRefuses(t *testing.T) {
	for _, m := range readModes {
		t.Run(m.name, func(t *testing.T) { testCloseWaitsAndRefuses(t, m.opts...) })
	}
}

func testCloseWaitsAndRefuses(t *testing.T, opts ...rdsclient.Option) {
	checkLeaks(t)
	srv := newServer(t)
	c := dial(t, srv, opts...)
	srv.Inject(rdstest.Hang(`^/disk print`))
	done := make(chan error, 1)
	go func() {
		_, err := c.Disk(context.Background(), "pvc-x")
		done <- err
	}()
	waitCommands(t, srv, `^/disk print`, 1)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Close has waited for the call's own bookkeeping; the goroutine may
	// still be on its way to the channel, so allow it a moment.
	select {
	case err := <-done:
		if !errors.Is(err, rdsclient.ErrClosed) {
			t.Errorf("in-flight call after Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("in-flight call still running 5s after Close returned")
	}
	if err := c.Ping(context.Background()); !errors.Is(err, rdsclient.ErrClosed) {
		t.Errorf("Ping after Close = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func newKey(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestConnectionStateOrder checks that a late "down" of a dropped
// connection never follows the "up" of its replacement: an Observer is
// usually a gauge keeping the last value, which would then read
// "disconnected" while connected.
func TestConnectionStateOrder(t *testing.T) {
	srv := newServer(t)
	obs := newObserver()
	// No backoff: the re-dial races the watcher's report.
	c := dial(t, srv, rdsclient.WithObserver(obs), rdsclient.WithRetry(3, 0))
	ctx := testCtx(t)
	for i := 0; i < 3; i++ {
		srv.DropConnections()
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("Ping after drop %d: %v", i, err)
		}
	}
	// Close waits for every watcher: no report can come later.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	checkAlternates(t, obs.stateLog(), 8) // up, 3 x (down, up), down at Close
}

// TestConnectionStateOrderLateWatcher forces the interleaving the test
// above can only hope for: the replacement is installed while the old
// connection is still up, and the old connection's watcher runs only
// afterwards. Its "down" must already have been reported, before the
// replacement's "up", and not again.
func TestConnectionStateOrderLateWatcher(t *testing.T) {
	srv := newServer(t)
	obs := newObserver()
	c := dial(t, srv, rdsclient.WithObserver(obs))
	closeOld, err := c.ReplaceConnection(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	closeOld() // the old connection's watcher runs now, late
	if err := c.Ping(testCtx(t)); err != nil {
		t.Fatalf("Ping on the replacement: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	checkAlternates(t, obs.stateLog(), 4) // up, down, up, down at Close
}

func checkAlternates(t *testing.T, states []bool, want int) {
	t.Helper()
	for i, up := range states {
		if up != (i%2 == 0) {
			t.Fatalf("connection states %v do not alternate up/down", states)
		}
	}
	if len(states) != want {
		t.Errorf("connection states %v, want %d alternating reports", states, want)
	}
}

// TestLargeStderrDoesNotStall: stdout and stderr share one flow-control
// window (2 MiB in x/crypto/ssh), so a client that reads stdout to its end
// before stderr stalls on a command printing more than that on stderr
// until the deadline. Both streams must be drained together.
func TestLargeStderrDoesNotStall(t *testing.T) {
	checkLeaks(t)
	srv := newServer(t)
	c := dial(t, srv, rdsclient.WithRetry(1, 0))
	line := strings.Repeat("x", 1023)
	big := strings.Repeat(line+"\n", 4<<10) // 4 MiB, twice the window
	srv.Inject(rdstest.StderrNth(`^/system identity`, 1, big, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.Ping(ctx)
	var ce *rdsclient.CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("Ping = %v, want the *CommandError of the failed command (a stall ends in DeadlineExceeded)", err)
	}
	if want := len(big) + len(big)/len(line+"\n"); len(ce.Stderr) != want || ce.ExitStatus != 1 || ce.Stdout != "" {
		t.Errorf("CommandError has %d bytes of stderr (want %d), stdout %q, exit status %d", len(ce.Stderr), want, ce.Stdout, ce.ExitStatus)
	}
	// The session ended cleanly: the connection is reused.
	if err := c.Ping(ctx); err != nil {
		t.Errorf("Ping after the large answer: %v", err)
	}
}
