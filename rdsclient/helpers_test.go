package rdsclient_test

import (
	"context"
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

// observer records what the client reports.
type observer struct {
	mu         sync.Mutex
	commands   map[string]int // "disk print ok" -> n
	states     []bool
	reconnects map[string]int
}

func newObserver() *observer {
	return &observer{commands: map[string]int{}, reconnects: map[string]int{}}
}

func (o *observer) RDSCommand(_ context.Context, command, status string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.commands[command+" "+status]++
}

func (o *observer) RDSConnectionState(_ context.Context, _ string, up bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.states = append(o.states, up)
}

func (o *observer) RDSReconnect(_ context.Context, status string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reconnects[status]++
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

// authorizedKey is the server's host key as an authorized_keys line.
func authorizedKey(srv *rdstest.Server) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(srv.HostKey())))
}
