package main

import (
	"context"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/srvlab/rds-csi/internal/testutil"
)

// run in-process: it serves until its context ends, returns nil, and
// leaves no goroutine behind.
func TestRunStopsCleanly(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	endpoint := "unix://" + filepath.Join(dir, "csi.sock")
	var logs testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--simulate", "--simulate-dir", filepath.Join(dir, "sim"), "--endpoint", endpoint,
			"--metrics-address", "127.0.0.1:0", "--node-id", "n1"}, envOf(), io.Discard, &logs)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "rds-csi-plugin: serving") {
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v\n%s", err, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving after 30s:\n%s", logs.String())
		}
	}

	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := csi.NewIdentityClient(conn).Probe(context.Background(), &csi.ProbeRequest{}); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	info, err := csi.NewIdentityClient(conn).GetPluginCapabilities(context.Background(), &csi.GetPluginCapabilitiesRequest{})
	if err != nil || len(info.GetCapabilities()) == 0 {
		t.Fatalf("GetPluginCapabilities: %v %v", info, err)
	}
	conn.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}

	// Goroutines of closed connections and servers wind down shortly.
	var n int
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if n = runtime.NumGoroutine(); n <= before {
			return
		}
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("%d goroutines before run, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
}
