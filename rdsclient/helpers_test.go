package rdsclient_test

import (
	"context"
	"log/slog"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

// checkLeaks registers a cleanup, run after every cleanup registered
// later (servers, clients), that fails the test when goroutines of the
// client, of the fake or of the SSH library are still running.
func checkLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		var leaked []string
		deadline := time.Now().Add(5 * time.Second)
		for {
			leaked = leakedGoroutines()
			if len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, g := range leaked {
			t.Errorf("leaked goroutine:\n%s", g)
		}
	})
}

func leakedGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "srvlab/rds-csi/rdsclient.") ||
			strings.Contains(g, "srvlab/rds-csi/rdsclient/rdstest.") ||
			strings.Contains(g, "golang.org/x/crypto/ssh.") {
			out = append(out, g)
		}
	}
	return out
}

// newServer starts a fake RDS closed at the end of the test.
func newServer(t testing.TB, opts ...rdstest.Option) *rdstest.Server {
	t.Helper()
	srv, err := rdstest.NewServer(opts...)
	if err != nil {
		t.Fatalf("rdstest.NewServer: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("server close: %v", err)
		}
	})
	return srv
}

// dial connects a Client to srv, closed at the end of the test.
func dial(t testing.TB, srv *rdstest.Server, opts ...rdsclient.Option) *rdsclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := rdsclient.Dial(ctx, srv.Addr(), srv.ClientConfig(), opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("client close: %v", err)
		}
	})
	return c
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

const pool = "storage-pool"

func spec(slot string, size int64) rdsclient.DiskSpec {
	return rdsclient.DiskSpec{
		Slot:      slot,
		FilePath:  "/" + pool + "/k8s/" + slot + ".img",
		SizeBytes: size,
		Export:    &rdsclient.NVMeExport{Port: 4420, NQN: "nqn.2000-02.com.mikrotik:" + slot},
	}
}

// mustDisk reads the disk in slot, failing the test when it cannot.
func mustDisk(t testing.TB, c *rdsclient.Client, slot string) rdsclient.Disk {
	t.Helper()
	d, err := c.Disk(testCtx(t), slot)
	if err != nil {
		t.Fatalf("Disk(%s): %v", slot, err)
	}
	return d
}

// deleteSlot deletes the disk in slot as a caller that knows only the
// slot does: it reads the disk, then deletes what it read. An absent
// disk is the read's ErrNotFound.
func deleteSlot(ctx context.Context, c *rdsclient.Client, slot string) error {
	d, err := c.Disk(ctx, slot)
	if err != nil {
		return err
	}
	return c.DeleteDisk(ctx, d)
}

// unknownOutcome makes the next command matching pattern end with its
// outcome unknown to the client without having run: the fake holds it
// until the connection is dropped, which happens as soon as the fake has
// received it. The command after it is served by a new connection.
func unknownOutcome(t testing.TB, srv *rdstest.Server, pattern string) {
	t.Helper()
	unknownOutcomes(t, srv, pattern, 1)
}

// unknownOutcomes is unknownOutcome for each of the next times commands
// matching pattern: every one is held until the connection is dropped,
// and none of them runs.
func unknownOutcomes(t testing.TB, srv *rdstest.Server, pattern string, times int) {
	t.Helper()
	re := regexp.MustCompile(pattern)
	n := 0
	for _, c := range srv.Commands() {
		if re.MatchString(c) {
			n++
		}
	}
	removeHang := srv.Inject(rdstest.Hang(pattern))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= times; i++ {
			if srv.WaitCommands(ctx, pattern, n+i) != nil {
				return
			}
			if i == times {
				removeHang()
			}
			srv.DropConnections()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		removeHang()
	})
}

// observer records what the client reports. Tests wait for reports with
// waitFor instead of polling.
type observer struct {
	mu         sync.Mutex
	commands   map[string]int // "disk print ok" -> n
	states     []bool
	reconnects map[string]int
	changed    chan struct{} // closed and replaced on every report
}

func newObserver() *observer {
	return &observer{commands: map[string]int{}, reconnects: map[string]int{}, changed: make(chan struct{})}
}

// reportLocked wakes waitFor; o.mu must be held.
func (o *observer) reportLocked() {
	close(o.changed)
	o.changed = make(chan struct{})
}

func (o *observer) RDSCommand(_ context.Context, command, status string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.commands[command+" "+status]++
	o.reportLocked()
}

func (o *observer) RDSConnectionState(_ context.Context, _ string, up bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.states = append(o.states, up)
	o.reportLocked()
}

func (o *observer) RDSReconnect(_ context.Context, status string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reconnects[status]++
	o.reportLocked()
}

// waitFor blocks until cond, called with o.mu held, is true, failing the
// test after 10 s.
func (o *observer) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	guard := time.NewTimer(10 * time.Second)
	defer guard.Stop()
	for {
		o.mu.Lock()
		ok, changed := cond(), o.changed
		o.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-guard.C:
			t.Fatalf("observer did not see %s within 10s", what)
		}
	}
}

func (o *observer) reconnectCount(status string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.reconnects[status]
}

func (o *observer) commandCount(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.commands[key]
}

func (o *observer) stateLog() []bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]bool(nil), o.states...)
}

// countCommands counts the commands the fake received that start with
// prefix.
func countCommands(srv *rdstest.Server, prefix string) int {
	n := 0
	for _, c := range srv.Commands() {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// waitCommands waits until srv has received n commands matching pattern,
// failing the test after 10 s.
func waitCommands(t testing.TB, srv *rdstest.Server, pattern string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.WaitCommands(ctx, pattern, n); err != nil {
		t.Fatalf("the fake did not receive %d commands matching %q: %v; got %q", n, pattern, err, srv.Commands())
	}
}

// logEvents is a slog.Handler that sends the message of every record
// whose message is msg on ch, so that a test can wait for what the
// client logs.
type logEvents struct {
	msg string
	ch  chan<- string
}

func (h logEvents) Enabled(context.Context, slog.Level) bool { return true }

func (h logEvents) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.ch <- r.Message
	}
	return nil
}

func (h logEvents) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h logEvents) WithGroup(string) slog.Handler      { return h }

// authorizedKey is the server's host key as an authorized_keys line.
func authorizedKey(srv *rdstest.Server) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(srv.HostKey())))
}
