package rdstest_test

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/srvlab/rds-csi/internal/testutil"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

func TestFailNth(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	remove := s.Inject(rdstest.FailNth(`^/disk add `, 2, "failure: not enough space"))
	ok(t, c, "/system identity print") // does not match, not counted
	ok(t, c, addDisk("a", "1M"))
	fails(t, c, addDisk("b", "1M"), "failure: not enough space")
	if _, err := s.DiskFile("b"); err == nil {
		t.Fatal("failed command was executed")
	}
	ok(t, c, addDisk("b", "1M")) // third match runs
	remove()
	remove()
}

func TestFailAlways(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	remove := s.Inject(rdstest.FailAlways(`remove`, "line one\nline two"))
	for range 2 {
		out := mustRun(t, c, "/disk remove [find]")
		if out.status != 1 || out.stdout != "line one\r\nline two\r\n" {
			t.Fatalf("got %+v", out)
		}
	}
	remove()
	ok(t, c, "/disk remove [find slot=none]")
}

func TestStderrNth(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	s.Inject(rdstest.StderrNth(`^/system identity`, 2, "bad\nworse", 3))
	ok(t, c, "/system identity print")
	out := mustRun(t, c, "/system identity print")
	if out.status != 3 || out.stdout != "" || out.stderr != "bad\r\nworse\r\n" {
		t.Fatalf("second identity print: %+v", out)
	}
	ok(t, c, "/system identity print")
	if len(s.Commands()) != 3 {
		t.Errorf("commands %q", s.Commands())
	}
}

// TestWaitCommandsAndIdle: WaitCommands returns once enough matching
// commands have arrived and WaitIdle once the sessions have ended; both
// give up with the context.
func TestWaitCommandsAndIdle(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.WaitCommands(expired, `^/system identity`, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitCommands before any command = %v, want context.Canceled", err)
	}
	s.Inject(rdstest.Hang(`identity`))
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Run("/system identity print") }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitCommands(ctx, `^/system identity`, 1); err != nil {
		t.Fatalf("WaitCommands: %v", err)
	}
	if got := s.Commands(); len(got) != 1 || got[0] != "/system identity print" {
		t.Fatalf("commands %q", got)
	}
	// The command hangs: its session is still served.
	if err := s.WaitIdle(expired); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitIdle with a hung session = %v, want context.Canceled", err)
	}
	sess.Close()
	if err := waitErr(t, done); err == nil {
		t.Fatal("hung session reported success")
	}
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatalf("WaitIdle after the session closed: %v", err)
	}
	s.ResetCommands()
	if err := s.WaitCommands(expired, `^/system identity`, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitCommands after ResetCommands = %v, want context.Canceled", err)
	}
}

func TestLatency(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	const d = 150 * time.Millisecond
	s.Inject(rdstest.Latency(`identity`, d))
	start := time.Now()
	ok(t, c, "/system identity print")
	if el := time.Since(start); el < d {
		t.Fatalf("latency not applied: %v", el)
	}
}

func TestLatencyAbandonedOnClose(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	s.Inject(rdstest.Latency(`^/disk add`, time.Hour))
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start(addDisk("late", "1M")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(s.Commands()) == 1 })
	sess.Close()
	ok(t, c, "/system identity print")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DiskFile("late"); err == nil {
		t.Fatal("abandoned command was executed")
	}
}

func TestHangEndsWithSession(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	s.Inject(rdstest.Hang(`identity`))
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Run("/system identity print") }()
	waitFor(t, func() bool { return len(s.Commands()) == 1 })
	select {
	case err := <-done:
		t.Fatalf("hung command answered: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	sess.Close()
	if err := waitErr(t, done); err == nil {
		t.Fatal("hung session reported success")
	}
	// Other commands still run while faults are active.
	ok(t, c, "/disk print count-only")
}

func TestDropAfterRun(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	s.Inject(rdstest.DropAfterRun(`^/disk add`, 1))
	_, err := exec(c, addDisk("dropped", "1M"))
	var ee *ssh.ExitError
	if err == nil || errors.As(err, &ee) {
		t.Fatalf("got %v, want a transport error without exit status", err)
	}
	if _, err := s.DiskFile("dropped"); err != nil {
		t.Fatalf("command was not executed: %v", err)
	}
	if _, err := exec(c, "/system identity print"); err == nil {
		t.Fatal("connection still usable after drop")
	}
	// A new connection works and the second match is not dropped.
	c2 := dial(t, s, "")
	ok(t, c2, addDisk("second", "1M"))
}

func TestDropConnections(t *testing.T) {
	s := newServer(t)
	c1, c2 := dial(t, s, ""), dial(t, s, "")
	s.DropConnections()
	for _, c := range []*ssh.Client{c1, c2} {
		if _, err := exec(c, "/system identity print"); err == nil {
			t.Fatal("connection survived DropConnections")
		}
	}
	ok(t, dial(t, s, ""), "/system identity print")
}

func TestRefuseConnections(t *testing.T) {
	s := newServer(t)
	live := dial(t, s, "")
	s.RefuseConnections(true)
	if c, err := ssh.Dial("tcp", s.Addr(), sshConfig(s, "")); err == nil {
		c.Close()
		t.Fatal("connection accepted while refusing")
	}
	ok(t, live, "/system identity print") // existing connections stay
	s.RefuseConnections(false)
	ok(t, dial(t, s, ""), "/system identity print")
}

func TestRejectAuth(t *testing.T) {
	s := newServer(t)
	s.RejectAuth(true)
	_, err := ssh.Dial("tcp", s.Addr(), sshConfig(s, ""))
	if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("got %v, want an authentication failure", err)
	}
	s.RejectAuth(false)
	ok(t, dial(t, s, ""), "/system identity print")
}

func TestMonitorWithoutOnceStreams(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var buf testutil.SyncBuffer
	sess.Stdout = &buf
	done := make(chan error, 1)
	if err := sess.Start("/disk monitor-traffic storage-pool"); err != nil {
		t.Fatal(err)
	}
	go func() { done <- sess.Wait() }()
	waitFor(t, func() bool { return strings.Contains(buf.String(), "wait-time:") })
	select {
	case err := <-done:
		t.Fatalf("monitor without once ended: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	sess.Close()
	waitErr(t, done)
}

// TestCloseWithHungCommands checks that Close returns while commands hang
// and clients stay connected, and that no goroutine outlives it.
func TestCloseWithHungCommands(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := rdstest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	s.Inject(rdstest.Hang(`identity`))
	s.Inject(rdstest.Latency(`resource`, time.Hour))
	c, err := ssh.Dial("tcp", s.Addr(), sshConfig(s, ""))
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan error, 8)
	for _, cmd := range []string{"/system identity print", "/system identity print", "/system resource print", "/disk monitor-traffic storage-pool"} {
		go func() { _, err := exec(c, cmd); results <- err }()
	}
	// A session that never sends exec.
	idle, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	waitFor(t, func() bool { return len(s.Commands()) == 4 })
	dataDir := s.DataDir()

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	if err := waitErr(t, closed); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range 4 {
		if err := waitErr(t, results); err == nil {
			t.Error("hung command reported success")
		}
	}
	c.Close()
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("temporary data dir kept: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// No goroutine leaks: the count returns to where it was.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
