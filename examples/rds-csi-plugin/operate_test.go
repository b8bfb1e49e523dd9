package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

// Crash loop: SIGKILL and restart on the same --state-file, again and
// again. The state file always opens (the dead process's lock is gone),
// and every restart's first scrape shows every attachment acknowledged
// before the kill.
func TestCrashLoop(t *testing.T) {
	dir := t.TempDir()
	args := []string{
		"--simulate", "--simulate-dir", filepath.Join(dir, "sim"),
		"--mode", "controller",
		"--endpoint", "unix://" + filepath.Join(dir, "csi.sock"),
		"--metrics-address", "127.0.0.1:0",
		"--state-file", filepath.Join(dir, "attachments.log"),
		"--node-id", "node-a",
		"--log-format", "json",
	}
	const restarts = 8
	acked := 0
	idByName := map[string]string{}
	for i := range restarts {
		s := startServing(t, nil, args...)
		if got := scrapeGauge(t, s.metricsURL, activeGauge); got != float64(acked) {
			t.Fatalf("start %d: first scrape %s = %v, want %d", i, activeGauge, got, acked)
		}
		ctrl := csi.NewControllerClient(s.conn)
		vol := createVolume(t, ctrl, fmt.Sprintf("crash-loop-%d", i))
		idByName[fmt.Sprintf("crash-loop-%d", i)] = vol.GetVolumeId()
		if _, err := publish(t, ctrl, vol, "node-a"); err != nil {
			t.Fatalf("start %d: ControllerPublishVolume: %v", i, err)
		}
		acked++
		// Killed right after the acknowledgement: durability is the
		// store's promise before the RPC returns, not at shutdown.
		s.signal(syscall.SIGKILL)
		s.wait(30 * time.Second)
		if strings.Contains(s.stderr(), "locked by another process") {
			t.Fatalf("start %d waited for the lock of a dead process:\n%s", i, s.stderr())
		}
	}
	s := startServing(t, nil, args...)
	if got := scrapeGauge(t, s.metricsURL, activeGauge); got != restarts {
		t.Fatalf("after %d kills: first scrape %s = %v, want %d", restarts, activeGauge, got, restarts)
	}
	// The fake RDS keeps its disks in --simulate-dir as a device does:
	// every volume is still there, published to node-a.
	published := publishedNodes(t, csi.NewControllerClient(s.conn))
	for name, id := range idByName {
		nodes, ok := published[id]
		if !ok {
			t.Errorf("volume %s (%s) created before a kill is gone after the restarts", name, id)
		} else if len(nodes) != 1 || nodes[0] != "node-a" {
			t.Errorf("volume %s published to %v, want [node-a]", name, nodes)
		}
	}
	s.signal(syscall.SIGTERM)
	if code := s.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
}

// A state file held by someone else is waited for (a process killed a
// moment ago may not be reaped yet) and used once it is released.
func TestStateFileLockIsWaitedFor(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "attachments.log")
	held, err := attach.NewFileStore(state)
	if err != nil {
		t.Fatal(err)
	}
	released := false
	t.Cleanup(func() {
		if !released {
			held.Close()
		}
	})
	p := startPlugin(t, nil, "--simulate", "--mode", "controller", "--node-id", "n1", "--log-format", "json",
		"--endpoint", "unix://"+filepath.Join(dir, "csi.sock"), "--state-file", state)
	p.waitLog("attach: state file locked by another process, waiting", 30*time.Second)
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	released = true
	p.waitLog("rds-csi-plugin: serving", 30*time.Second)
	// --state-file without --simulate-dir: the fake's disks die with the
	// process, the attachments do not; the operator is told.
	p.waitLog("simulate: the simulated RDS's disks are lost on exit while --state-file keeps their attachments; use --simulate-dir to keep both", 10*time.Second)
	p.signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
}

// SIGTERM while startup waits (here for the state file's lock) stops the
// process promptly with exit 0: stopping is what was asked.
func TestSIGTERMDuringStartup(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "attachments.log")
	held, err := attach.NewFileStore(state)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Close() })
	p := startPlugin(t, nil, "--simulate", "--mode", "controller", "--node-id", "n1", "--log-format", "json",
		"--endpoint", "unix://"+filepath.Join(dir, "csi.sock"), "--state-file", state)
	p.waitLog("attach: state file locked by another process, waiting", 30*time.Second)
	sigAt := time.Now()
	p.signal(syscall.SIGTERM)
	if code := p.wait(5*time.Second - time.Since(sigAt)); code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
	if !strings.Contains(p.stderr(), "rds-csi-plugin: stopped during startup:") {
		t.Errorf("stderr does not say startup was stopped")
	}
}

// SIGTERM while an RPC hangs: the process cancels it after the grace
// period and still exits 0 within 5 s, even with the OTLP collector down
// (the final export fails, which is logged, not fatal).
func TestSIGTERMBoundsAHungRPC(t *testing.T) {
	dir := t.TempDir()
	s := startServing(t, []string{
		envSimulateLatency + "=10m",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + closedPort(t),
		"OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
	}, "--simulate", "--mode", "controller", "--log-format", "json", "--log-level", "debug",
		"--endpoint", "unix://"+filepath.Join(dir, "csi.sock"))
	ctrl := csi.NewControllerClient(s.conn)
	done := make(chan error, 1)
	go func() {
		_, err := ctrl.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
			Name:               "hung",
			CapacityRange:      &csi.CapacityRange{RequiredBytes: 32 << 20},
			VolumeCapabilities: []*csi.VolumeCapability{mountCapability()},
		})
		done <- err
	}()
	s.waitLog("csi request", 30*time.Second)
	sigAt := time.Now()
	s.signal(syscall.SIGTERM)
	code := s.wait(5*time.Second - time.Since(sigAt))
	if code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("CreateVolume hung for 10m yet succeeded")
		}
		if c := status.Code(err); c != codes.Unavailable && c != codes.Canceled {
			t.Fatalf("CreateVolume cut short by shutdown: %v, want Unavailable or Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client never learned its RPC was cut short")
	}
	for _, want := range []string{"did not finish in time", "final metrics export failed"} {
		if !strings.Contains(s.stderr(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// Against an RDS reached over SSH (a fake one started by the test): the
// key file and a known_hosts pin work, and a wrong pin or an unauthorized
// key is one clear error line.
func TestRealRDSConnection(t *testing.T) {
	srv, err := rdstest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	dir := t.TempDir()
	key, wrongHostLine := writeKey(t, dir)
	signer := readSigner(t, key)
	srv.AuthorizeKey(signer.PublicKey())
	knownHosts := filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(srv.Addr())}, srv.HostKey())
	if err := os.WriteFile(knownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherDir := t.TempDir()
	otherKey, _ := writeKey(t, otherDir)
	hostLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(srv.HostKey())))

	base := func(extra ...string) []string {
		sub := t.TempDir()
		return append([]string{"--mode", "controller", "--node-id", "n1", "--log-format", "json",
			"--endpoint", "unix://" + filepath.Join(sub, "csi.sock"),
			"--state-file", filepath.Join(sub, "attachments.log"),
			"--rds-address", srv.Addr(), "--volume-path", "/" + rdstest.DefaultPool + "/k8s"}, extra...)
	}

	t.Run("known_hosts", func(t *testing.T) {
		s := startServing(t, []string{"RDS_CSI_RDS_KEY_FILE=" + key}, base("--rds-known-hosts", knownHosts)...)
		ctrl := csi.NewControllerClient(s.conn)
		vol := createVolume(t, ctrl, "over-ssh")
		if _, err := srv.BackingFile(vol.GetVolumeContext()["nqn"]); err != nil {
			t.Errorf("CreateVolume did not create a disk on the RDS: %v", err)
		}
		if _, err := ctrl.DeleteVolume(rpcCtx(t), &csi.DeleteVolumeRequest{VolumeId: vol.GetVolumeId()}); err != nil {
			t.Fatalf("DeleteVolume: %v", err)
		}
		s.signal(syscall.SIGTERM)
		if code := s.wait(10 * time.Second); code != 0 {
			t.Fatalf("exit code after SIGTERM = %d, want 0", code)
		}
	})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"wrong host key", base("--rds-key-file", key, "--rds-host-key", wrongHostLine), "host key"},
		{"unauthorized key", base("--rds-key-file", otherKey, "--rds-host-key", hostLine), "unable to authenticate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPlugin(t, nil, tc.args...)
			if code := p.wait(30 * time.Second); code == 0 {
				t.Fatal("exit code 0, want non-zero")
			}
			checkOneErrorLine(t, p.stderr(), "connecting to the RDS at "+srv.Addr(), tc.want)
		})
	}
}

// publishedNodes lists every volume of the controller with the nodes it
// is published to.
func publishedNodes(t *testing.T, ctrl csi.ControllerClient) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	req := &csi.ListVolumesRequest{}
	for {
		resp, err := ctrl.ListVolumes(rpcCtx(t), req)
		if err != nil {
			t.Fatalf("ListVolumes: %v", err)
		}
		for _, e := range resp.GetEntries() {
			out[e.GetVolume().GetVolumeId()] = e.GetStatus().GetPublishedNodeIds()
		}
		if resp.GetNextToken() == "" {
			return out
		}
		req.StartingToken = resp.GetNextToken()
	}
}

func readSigner(t *testing.T, path string) ssh.Signer {
	t.Helper()
	pem, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkOneErrorLine: out is exactly one "rds-csi-plugin: ..." line
// containing every want, with no panic or goroutine dump.
func checkOneErrorLine(t *testing.T, out string, want ...string) {
	t.Helper()
	if strings.Contains(out, "goroutine") || strings.Contains(out, "panic") {
		t.Fatalf("stderr has a panic or goroutine dump:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "rds-csi-plugin: ") {
		t.Fatalf("want exactly one line starting with %q, got:\n%s", "rds-csi-plugin: ", out)
	}
	for _, w := range want {
		if !strings.Contains(lines[0], w) {
			t.Errorf("error line %q does not mention %q", lines[0], w)
		}
	}
}

// A state file damaged in the middle stops the controller with one error
// line that names the way out, and the file is left byte for byte; with
// --state-truncate-at-corruption it starts, keeping the records before the
// damage, and says at error level what it dropped.
func TestCorruptStateFile(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "attachments.log")
	store, err := attach.NewFileStore(state)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 5 {
		a := attach.Attachment{VolumeID: fmt.Sprintf("pvc-%d", i), Mode: attach.Exclusive, Nodes: []string{"n1"}}
		if err := store.Put(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	// Five records of one size: the middle byte lies in the third, so
	// two valid records follow the damage.
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(state, data, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--simulate", "--mode", "controller", "--node-id", "n1", "--log-format", "json",
		"--endpoint", "unix://" + filepath.Join(dir, "csi.sock"), "--state-file", state}

	p := startPlugin(t, nil, args...)
	if code := p.wait(30 * time.Second); code == 0 {
		t.Fatalf("started on a corrupt state file; stderr:\n%s", p.stderr())
	}
	checkOneErrorLine(t, p.stderr(), "--state-file", "corrupt", "move it aside", "--state-truncate-at-corruption")
	if after, err := os.ReadFile(state); err != nil || string(after) != string(data) {
		t.Fatalf("state file changed by a refused start (err %v)", err)
	}

	p = startPlugin(t, nil, append(args, "--state-truncate-at-corruption")...)
	rec := p.waitLog("attach: truncating corrupt log as asked: valid records after the damage are lost", 30*time.Second)
	if rec["level"] != "ERROR" || rec["valid_records_dropped"] != float64(2) {
		t.Errorf("truncation record = %v, want level ERROR and 2 valid records dropped", rec)
	}
	// It says what it does to the file, not what a refused open does.
	if d, _ := rec["damage"].(string); !strings.Contains(d, "2 valid records follow") || !strings.Contains(d, "the log is cut at the damaged record") {
		t.Errorf("truncation record's damage = %q, want where the damage is and that the log is cut there", d)
	}
	if strings.Contains(fmt.Sprint(rec), "left as it is") {
		t.Errorf("truncation record says the file is left as it is: %v", rec)
	}
	p.waitLog("rds-csi-plugin: serving", 30*time.Second)
	p.signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	// The records before the damage survived the truncation.
	store, err = attach.NewFileStore(state)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	as, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range as {
		ids = append(ids, a.VolumeID)
	}
	slices.Sort(ids)
	if want := []string{"pvc-0", "pvc-1"}; !slices.Equal(ids, want) {
		t.Errorf("attachments after recovery = %v, want %v", ids, want)
	}
}
