package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/internal/testutil"
)

// pluginBin is the rds-csi-plugin binary built once by TestMain (with the
// race detector when the tests run with it).
var pluginBin string

func TestMain(m *testing.M) {
	os.Exit(testutil.MainWithBinary(m, ".", "rds-csi-plugin", raceEnabled, &pluginBin))
}

// proc is one running plugin process.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	err  error         // cmd.Wait's result, set before done closes

	mu    sync.Mutex
	lines []string
	grew  chan struct{} // closed and replaced whenever a line arrives
}

// testEnv is the inherited environment without anything that configures
// the plugin or OpenTelemetry, plus extra. Tests run in a pod (a CI runner
// on Kubernetes) must not turn --cluster auto on.
func testEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, envPrefix) || strings.HasPrefix(kv, "OTEL_") || strings.HasPrefix(kv, envInPod+"=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// startPlugin starts the binary; the process is killed at the end of the
// test if it is still running.
func startPlugin(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, done: make(chan struct{}), grew: make(chan struct{})}
	p.cmd = exec.Command(pluginBin, args...)
	p.cmd.Env = testEnv(env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.grew)
			p.grew = make(chan struct{})
			p.mu.Unlock()
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("plugin stderr:\n%s", p.stderr())
		}
	})
	return p
}

func (p *proc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// waitLog waits for a JSON log record with message msg and returns it.
func (p *proc) waitLog(msg string, timeout time.Duration) map[string]any {
	p.t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		p.mu.Lock()
		lines, grew := p.lines[seen:], p.grew
		seen = len(p.lines)
		p.mu.Unlock()
		for _, l := range lines {
			var rec map[string]any
			if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == msg {
				return rec
			}
		}
		select {
		case <-grew:
		case <-p.done:
			p.t.Fatalf("plugin exited (%v) before logging %q", p.err, msg)
		case <-deadline:
			p.t.Fatalf("no %q log within %v", msg, timeout)
		}
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("plugin still running after %v", timeout)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatalf("wait: %v", p.err)
	}
	return 0
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// serving is a started plugin: its gRPC connection and metrics URL.
type serving struct {
	*proc
	conn       *grpc.ClientConn
	metricsURL string
}

// startServing starts the plugin and waits until it serves.
func startServing(t *testing.T, env []string, args ...string) *serving {
	t.Helper()
	p := startPlugin(t, env, args...)
	rec := p.waitLog("rds-csi-plugin: serving", 60*time.Second)
	s := &serving{proc: p}
	if addr, _ := rec["metrics_address"].(string); addr != "" {
		s.metricsURL = "http://" + addr + "/metrics"
	}
	endpoint := ""
	for i, a := range args {
		if a == "--endpoint" {
			endpoint = args[i+1]
		}
	}
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s.conn = conn
	return s
}

func rpcCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// scrapeGauge reads one gauge without labels of ours from /metrics.
func scrapeGauge(t *testing.T, url, name string) float64 {
	t.Helper()
	families := scrapeAll(t, url)
	mf, ok := families[name]
	if !ok {
		t.Fatalf("/metrics has no %s", name)
	}
	if mf.GetType() != dto.MetricType_GAUGE || len(mf.GetMetric()) != 1 {
		t.Fatalf("%s: want one gauge series, got %v", name, mf)
	}
	return mf.GetMetric()[0].GetGauge().GetValue()
}

// scrapeAll fetches and parses /metrics.
func scrapeAll(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// checkMetricsDocumented: every rds_csi_* family the plugin exposes is in
// the README metrics table.
func checkMetricsDocumented(t *testing.T, url string) {
	t.Helper()
	doc := readme(t)
	n := 0
	for name := range scrapeAll(t, url) {
		if !strings.HasPrefix(name, "rds_csi_") {
			continue
		}
		n++
		if !strings.Contains(doc, "| `"+name+"` |") {
			t.Errorf("metric %s is not in the README metrics table", name)
		}
	}
	if n < 5 {
		t.Errorf("only %d rds_csi_* metrics exposed after a lifecycle", n)
	}
}

func mountCapability() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

func createVolume(t *testing.T, ctrl csi.ControllerClient, name string) *csi.Volume {
	t.Helper()
	resp, err := ctrl.CreateVolume(rpcCtx(t), &csi.CreateVolumeRequest{
		Name:               name,
		CapacityRange:      &csi.CapacityRange{RequiredBytes: 32 << 20},
		VolumeCapabilities: []*csi.VolumeCapability{mountCapability()},
	})
	if err != nil {
		t.Fatalf("CreateVolume %s: %v", name, err)
	}
	return resp.GetVolume()
}

func publish(t *testing.T, ctrl csi.ControllerClient, vol *csi.Volume, node string) (map[string]string, error) {
	t.Helper()
	resp, err := ctrl.ControllerPublishVolume(rpcCtx(t), &csi.ControllerPublishVolumeRequest{
		VolumeId:         vol.GetVolumeId(),
		NodeId:           node,
		VolumeCapability: mountCapability(),
		VolumeContext:    vol.GetVolumeContext(),
	})
	return resp.GetPublishContext(), err
}

// loopAvailable reports whether simulated node staging can work here.
func loopAvailable() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "not root"
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return false, "no loop devices: " + err.Error()
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return false, "no mkfs.ext4"
	}
	return true, ""
}

const activeGauge = "rds_csi_nvme_connections_active"

// A whole lifecycle in simulation, then a SIGKILL and a restart on the same
// state file: the first scrape of the new process already shows the
// attachments.
func TestLifecycleAndRestart(t *testing.T) {
	dir := t.TempDir()
	args := []string{
		"--simulate", "--simulate-dir", filepath.Join(dir, "sim"),
		"--mode", "all",
		"--endpoint", "unix://" + filepath.Join(dir, "csi.sock"),
		"--metrics-address", "127.0.0.1:0",
		"--state-file", filepath.Join(dir, "state", "attachments.log"),
		"--node-id", "node-a",
		"--known-nodes", "node-b, node-c",
		"--log-format", "json",
	}
	s := startServing(t, nil, args...)
	ctrl := csi.NewControllerClient(s.conn)

	if got := scrapeGauge(t, s.metricsURL, activeGauge); got != 0 {
		t.Fatalf("%s before any publish = %v, want 0", activeGauge, got)
	}
	v1 := createVolume(t, ctrl, "lifecycle-one")
	v2 := createVolume(t, ctrl, "lifecycle-two")
	pc1, err := publish(t, ctrl, v1, "node-a")
	if err != nil {
		t.Fatalf("publish to the plugin's own node: %v", err)
	}
	if _, err := publish(t, ctrl, v2, "node-b"); err != nil {
		t.Fatalf("publish to a --known-nodes node: %v", err)
	}
	if _, err := publish(t, ctrl, v2, "node-z"); status.Code(err) != codes.NotFound {
		t.Fatalf("publish to an unknown node: got %v, want NotFound", err)
	}
	const want = 2
	if got := scrapeGauge(t, s.metricsURL, activeGauge); got != want {
		t.Fatalf("%s = %v, want %d", activeGauge, got, want)
	}
	// The Manager's refusal reaches the recorder through its observer.
	if _, err := publish(t, ctrl, v2, "node-c"); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("publish to a second node: got %v, want FailedPrecondition", err)
	}
	if mf := scrapeAll(t, s.metricsURL)["rds_csi_attachment_conflicts_total"]; len(mf.GetMetric()) != 1 ||
		mf.GetMetric()[0].GetCounter().GetValue() != 1 {
		t.Fatalf("rds_csi_attachment_conflicts_total = %v, want 1", mf)
	}

	if ok, why := loopAvailable(); ok {
		nodeLifecycle(t, csi.NewNodeClient(s.conn), v1, pc1, filepath.Join(dir, "node"))
	} else {
		t.Logf("node staging skipped (%s); controller lifecycle checked", why)
		checkStageRefused(t, csi.NewNodeClient(s.conn), v1, pc1, filepath.Join(dir, "node"))
	}
	checkMetricsDocumented(t, s.metricsURL)

	s.signal(syscall.SIGKILL)
	s.wait(10 * time.Second)

	s2 := startServing(t, nil, args...)
	if got := scrapeGauge(t, s2.metricsURL, activeGauge); got != want {
		t.Fatalf("first scrape after restart: %s = %v, want %d", activeGauge, got, want)
	}
	ctrl2 := csi.NewControllerClient(s2.conn)
	// The fake RDS keeps its disk table in --simulate-dir: the volumes
	// created before the kill are still there, with their attachments.
	published := publishedNodes(t, ctrl2)
	for vol, node := range map[string]string{v1.GetVolumeId(): "node-a", v2.GetVolumeId(): "node-b"} {
		if nodes, ok := published[vol]; !ok || len(nodes) != 1 || nodes[0] != node {
			t.Errorf("after restart: volume %s: listed %v, published to %v; want published to %s", vol, ok, nodes, node)
		}
	}
	if _, err := ctrl2.ControllerUnpublishVolume(rpcCtx(t), &csi.ControllerUnpublishVolumeRequest{
		VolumeId: v1.GetVolumeId(), NodeId: "node-a",
	}); err != nil {
		t.Fatalf("ControllerUnpublishVolume after restart: %v", err)
	}
	if got := scrapeGauge(t, s2.metricsURL, activeGauge); got != want-1 {
		t.Fatalf("after unpublish: %s = %v, want %d", activeGauge, got, want-1)
	}
	if _, err := ctrl2.DeleteVolume(rpcCtx(t), &csi.DeleteVolumeRequest{VolumeId: v1.GetVolumeId()}); err != nil {
		t.Fatalf("DeleteVolume of a volume created before the restart: %v", err)
	}
	if _, ok := publishedNodes(t, ctrl2)[v1.GetVolumeId()]; ok {
		t.Errorf("volume %s still listed after DeleteVolume", v1.GetVolumeId())
	}
	s2.signal(syscall.SIGTERM)
	if code := s2.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
}

// nodeLifecycle stages and publishes a mount volume, writes through it,
// reads stats, and undoes everything (before the process is killed, so no
// mount or loop device outlives the test).
func nodeLifecycle(t *testing.T, node csi.NodeClient, vol *csi.Volume, pc map[string]string, dir string) {
	t.Helper()
	staging, target := filepath.Join(dir, "staging"), filepath.Join(dir, "target")
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolumeId()
	if _, err := node.NodeStageVolume(rpcCtx(t), &csi.NodeStageVolumeRequest{
		VolumeId: id, PublishContext: pc, StagingTargetPath: staging,
		VolumeCapability: mountCapability(), VolumeContext: vol.GetVolumeContext(),
	}); err != nil {
		t.Fatalf("NodeStageVolume: %v", err)
	}
	unstaged := false
	defer func() {
		if !unstaged {
			node.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
			node.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
		}
	}()
	if _, err := node.NodePublishVolume(rpcCtx(t), &csi.NodePublishVolumeRequest{
		VolumeId: id, PublishContext: pc, StagingTargetPath: staging, TargetPath: target,
		VolumeCapability: mountCapability(), VolumeContext: vol.GetVolumeContext(),
	}); err != nil {
		t.Fatalf("NodePublishVolume: %v", err)
	}
	data := []byte("written through the simulated NVMe volume\n")
	if err := os.WriteFile(filepath.Join(target, "hello.txt"), data, 0o644); err != nil {
		t.Fatalf("write to the published volume: %v", err)
	}
	st, err := node.NodeGetVolumeStats(rpcCtx(t), &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target})
	if err != nil {
		t.Fatalf("NodeGetVolumeStats: %v", err)
	}
	if len(st.GetUsage()) == 0 || st.GetUsage()[0].GetTotal() <= 0 {
		t.Fatalf("NodeGetVolumeStats: no usable usage: %v", st)
	}
	if _, err := node.NodeUnpublishVolume(rpcCtx(t), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatalf("NodeUnpublishVolume: %v", err)
	}
	if _, err := node.NodeUnstageVolume(rpcCtx(t), &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatalf("NodeUnstageVolume: %v", err)
	}
	unstaged = true
}

// checkStageRefused: without root or loop devices, staging fails and says
// why.
func checkStageRefused(t *testing.T, node csi.NodeClient, vol *csi.Volume, pc map[string]string, dir string) {
	t.Helper()
	staging := filepath.Join(dir, "staging")
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	_, err := node.NodeStageVolume(rpcCtx(t), &csi.NodeStageVolumeRequest{
		VolumeId: vol.GetVolumeId(), PublishContext: pc, StagingTargetPath: staging,
		VolumeCapability: mountCapability(), VolumeContext: vol.GetVolumeContext(),
	})
	if err == nil || !strings.Contains(err.Error(), "loop") {
		t.Fatalf("NodeStageVolume without loop devices: got %v, want an error explaining loop devices are needed", err)
	}
}

// SIGTERM while an RPC is running: the RPC completes and the process exits
// 0 promptly.
func TestSIGTERMLetsInFlightRPCFinish(t *testing.T) {
	dir := t.TempDir()
	const latency = time.Second // well inside gracePeriod, even on a loaded machine
	s := startServing(t, []string{envSimulateLatency + "=" + latency.String()},
		"--simulate", "--mode", "controller", "--log-format", "json", "--log-level", "debug",
		"--endpoint", "unix://"+filepath.Join(dir, "csi.sock"))
	ctrl := csi.NewControllerClient(s.conn)

	type result struct {
		err     error
		elapsed time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		_, err := ctrl.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
			Name:               "slow",
			CapacityRange:      &csi.CapacityRange{RequiredBytes: 32 << 20},
			VolumeCapabilities: []*csi.VolumeCapability{mountCapability()},
		})
		done <- result{err, time.Since(start)}
	}()
	// The logging interceptor logs the request at debug level before
	// the handler runs: from then on the RPC is in flight.
	s.waitLog("csi request", 10*time.Second)
	sigAt := time.Now()
	s.signal(syscall.SIGTERM)

	r := <-done
	if r.err != nil {
		t.Fatalf("in-flight CreateVolume failed after SIGTERM: %v", r.err)
	}
	if r.elapsed < latency {
		t.Fatalf("CreateVolume took %v, less than the injected %v: latency not applied", r.elapsed, latency)
	}
	if code := s.wait(5*time.Second - time.Since(sigAt)); code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
	if strings.Contains(s.stderr(), "did not finish in time") {
		t.Fatal("shutdown cancelled RPCs instead of waiting for them")
	}
}

// writeKey writes a fresh unencrypted OpenSSH private key and returns its
// path and the authorized_keys line of its public key.
func writeKey(t *testing.T, dir string) (string, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return path, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
}

// closedPort returns a loopback address nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Every configuration mistake ends the process with one clear line on
// stderr and a non-zero exit, never a panic or a goroutine dump.
func TestBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	key, hostLine := writeKey(t, dir)
	notKey := filepath.Join(dir, "not-a-key")
	if err := os.WriteFile(notKey, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // parallel subtests run after this function returns
	unreachable := closedPort(t)
	sock := "unix://" + filepath.Join(dir, "csi.sock")
	rds := func(extra ...string) []string {
		return append([]string{"--endpoint", sock, "--mode", "controller",
			"--state-file", filepath.Join(t.TempDir(), "attachments.log")}, extra...)
	}

	cases := []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"bad flag", nil, []string{"--no-such-flag"}, []string{"unknown flag --no-such-flag"}},
		{"duration without unit", nil, []string{"--simulate", "--rds-dial-timeout", "5"},
			[]string{"--rds-dial-timeout: want a duration with its unit, such as 15s"}},
		{"metrics port alone", nil, []string{"--simulate", "--endpoint", sock, "--metrics-address", "9091"},
			[]string{"--metrics-address", `use ":9091"`}},
		{"node state dir under a file", nil, []string{"--mode", "node", "--node-id", "n1", "--endpoint", sock,
			"--node-state-dir", filepath.Join(notKey, "node")}, []string{"--node-state-dir: the node cannot write its stage records in " + filepath.Join(notKey, "node")}},
		{"socket directory missing", []string{"RDS_CSI_ENDPOINT=unix://" + filepath.Join(dir, "absent", "csi.sock")}, []string{"--simulate"},
			[]string{"RDS_CSI_ENDPOINT: ", "create the socket's directory"}},
		{"stray argument", nil, []string{"--simulate", "extra"}, []string{`unexpected argument "extra"`}},
		{"bad mode", nil, []string{"--mode", "sideways"}, []string{"--mode", "controller, node or all", "sideways"}},
		{"bad mode from env", []string{"RDS_CSI_MODE=sideways"}, nil, []string{"RDS_CSI_MODE", "sideways"}},
		{"bad bool from env", []string{"RDS_CSI_SIMULATE=perhaps"}, nil, []string{"RDS_CSI_SIMULATE", "perhaps"}},
		{"bad log level", nil, []string{"--simulate", "--log-level", "loud"}, []string{"--log-level", "loud"}},
		{"no rds address", nil, rds("--rds-key-file", key, "--rds-host-key", hostLine), []string{"--rds-address is required"}},
		{"missing key file", nil, rds("--rds-address", unreachable, "--rds-key-file", filepath.Join(dir, "absent"), "--rds-host-key", hostLine),
			[]string{"--rds-key-file", "no such file"}},
		{"key file is not a key", nil, rds("--rds-address", unreachable, "--rds-key-file", notKey, "--rds-host-key", hostLine),
			[]string{"--rds-key-file", notKey}},
		{"missing host key", nil, rds("--rds-address", unreachable, "--rds-key-file", key),
			[]string{"host key must be pinned", "--rds-known-hosts", "--rds-host-key"}},
		{"bad host key", nil, rds("--rds-address", unreachable, "--rds-key-file", key, "--rds-host-key", "ssh-ed25519 !!!"),
			[]string{"--rds-host-key"}},
		{"missing known_hosts file", nil, rds("--rds-address", unreachable, "--rds-key-file", key, "--rds-known-hosts", filepath.Join(dir, "absent_known_hosts")),
			[]string{"--rds-known-hosts", "absent_known_hosts"}},
		{"unreachable rds", nil, rds("--rds-address", unreachable, "--rds-key-file", key, "--rds-host-key", hostLine, "--rds-dial-timeout", "5s"),
			[]string{"connecting to the RDS at " + unreachable}},
		{"metrics port taken", nil, []string{"--simulate", "--endpoint", sock, "--metrics-address", busy.Addr().String()},
			[]string{"--metrics-address", busy.Addr().String()}},
		{"bad otlp protocol", []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL=http/json"},
			[]string{"--simulate", "--endpoint", sock}, []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"}},
		{"bad endpoint", nil, []string{"--simulate", "--endpoint", "carrier-pigeon://x"}, []string{"--endpoint"}},
		{"otlp endpoint without scheme", []string{"OTEL_EXPORTER_OTLP_ENDPOINT=collector:4317"},
			[]string{"--simulate", "--endpoint", sock}, []string{"OTEL_EXPORTER_OTLP_ENDPOINT", `"collector:4317"`}},
		{"otlp interval not milliseconds", []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1", "OTEL_METRIC_EXPORT_INTERVAL=10s"},
			[]string{"--simulate", "--endpoint", sock}, []string{"OTEL_METRIC_EXPORT_INTERVAL", "10s"}},
		{"bad resource attributes", []string{"OTEL_RESOURCE_ATTRIBUTES=team=%zz"},
			[]string{"--simulate", "--endpoint", sock}, []string{"OTEL_RESOURCE_ATTRIBUTES", "%zz"}},
		{"state file is a directory", nil, []string{"--simulate", "--endpoint", sock, "--state-file", dir},
			[]string{"--state-file", dir}},
		{"negative max volumes", []string{"RDS_CSI_MAX_VOLUMES=-2"}, []string{"--simulate", "--endpoint", sock},
			[]string{"RDS_CSI_MAX_VOLUMES", "-2", "0 (no limit) or positive"}},
		{"missing kubeconfig", nil, []string{"--simulate", "--mode", "controller", "--endpoint", sock, "--kubeconfig", filepath.Join(dir, "absent-kubeconfig")},
			[]string{"--kubeconfig: ", "absent-kubeconfig"}},
		{"state file in a pod", []string{envInPod + "=10.96.0.1"}, []string{"--simulate", "--mode", "controller", "--endpoint", sock, "--state-file", filepath.Join(dir, "a.log")},
			[]string{"--state-file cannot be used with the cluster", envInPod, "--cluster off"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startPlugin(t, tc.env, tc.args...)
			code := p.wait(30 * time.Second)
			if code == 0 {
				t.Fatalf("exit code 0, want non-zero; stderr:\n%s", p.stderr())
			}
			checkOneErrorLine(t, p.stderr(), tc.want...)
		})
	}
}

func TestVersionAndHelp(t *testing.T) {
	out, err := exec.Command(pluginBin, "--version").Output()
	if err != nil {
		t.Fatalf("--version: %v", err)
	}
	if !strings.HasPrefix(string(out), "rds-csi-plugin ") {
		t.Fatalf("--version printed %q", out)
	}
	cmd := exec.Command(pluginBin, "--help")
	cmd.Stderr = io.Discard
	help, err := cmd.Output()
	if err != nil {
		t.Fatalf("--help: %v", err)
	}
	for _, want := range []string{"--rds-key-file", "RDS_CSI_RDS_KEY_FILE", "--simulate"} {
		if !strings.Contains(string(help), want) {
			t.Errorf("--help output lacks %q", want)
		}
	}
}

// RDS_CSI_VERSION=true left in the environment (a pod spec, a shell) does
// not turn the plugin into a version printer: it serves.
func TestVersionEnvironmentDoesNotStopPlugin(t *testing.T) {
	dir := t.TempDir()
	s := startServing(t, []string{"RDS_CSI_VERSION=true"}, "--simulate", "--mode", "controller", "--node-id", "n1",
		"--log-format", "json", "--endpoint", "unix://"+filepath.Join(dir, "csi.sock"))
	if _, err := csi.NewIdentityClient(s.conn).Probe(rpcCtx(t), &csi.ProbeRequest{}); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	s.signal(syscall.SIGTERM)
	if code := s.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
}

// --max-volumes (or RDS_CSI_MAX_VOLUMES) is the max_volumes_per_node the
// node reports and the per-node limit the controller enforces; 0 is no
// limit on either side.
func TestMaxVolumes(t *testing.T) {
	cases := []struct {
		name string
		env  []string
		args []string
		want int64
	}{
		{"flag", nil, []string{"--max-volumes", "2"}, 2},
		{"environment zero", []string{"RDS_CSI_MAX_VOLUMES=0"}, nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := startServing(t, tc.env, append([]string{"--simulate", "--mode", "all", "--node-id", "n1",
				"--log-format", "json", "--endpoint", "unix://" + filepath.Join(dir, "csi.sock")}, tc.args...)...)
			info, err := csi.NewNodeClient(s.conn).NodeGetInfo(rpcCtx(t), &csi.NodeGetInfoRequest{})
			if err != nil {
				t.Fatalf("NodeGetInfo: %v", err)
			}
			if info.GetMaxVolumesPerNode() != tc.want {
				t.Fatalf("max_volumes_per_node = %d, want %d", info.GetMaxVolumesPerNode(), tc.want)
			}
			// Up to the limit publishes succeed, the next one is refused;
			// without a limit, three (more than the other case's) succeed.
			ctrl := csi.NewControllerClient(s.conn)
			n := max(tc.want, 2) + 1
			for i := range n {
				vol := createVolume(t, ctrl, fmt.Sprintf("max-volumes-%d", i))
				_, err := publish(t, ctrl, vol, "n1")
				switch {
				case tc.want > 0 && i == tc.want:
					if status.Code(err) != codes.ResourceExhausted {
						t.Fatalf("publish %d over a limit of %d: got %v, want ResourceExhausted", i+1, tc.want, err)
					}
				case err != nil:
					t.Fatalf("publish %d (limit %d): %v", i+1, tc.want, err)
				}
			}
			s.signal(syscall.SIGTERM)
			if code := s.wait(10 * time.Second); code != 0 {
				t.Fatalf("exit code after SIGTERM = %d, want 0", code)
			}
		})
	}
}

// versionOf returns what --version reports.
func versionOf(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(pluginBin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "rds-csi-plugin ")
	if !ok || v == "" {
		t.Fatalf("--version printed %q", out)
	}
	return v
}

// --check-config validates what a start would and exits, connecting to
// nothing: a good configuration prints "configuration ok" and leaves no
// socket, a bad one is the usual one-line error and exit status 1.
func TestCheckConfig(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "csi.sock")
	base := []string{"--check-config", "--mode", "controller", "--endpoint", "unix://" + sock,
		"--rds-address", "192.0.2.1", "--rds-key-file", "/nonexistent/key", "--rds-host-key", "ssh-ed25519 AAAA"}
	cmd := exec.Command(pluginBin, base...)
	cmd.Env = testEnv()
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "configuration ok" {
		t.Fatalf("--check-config of a good configuration: %v, %q", err, out)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("--check-config created the socket: %v", err)
	}
	cmd = exec.Command(pluginBin, append(base, "--log-level", "loud")...)
	cmd.Env = testEnv()
	out, err = cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "--log-level") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Fatalf("--check-config of a bad --log-level: %v, %q; want exit 1 and one line naming the flag", err, out)
	}
	// No environment fallback: RDS_CSI_CHECK_CONFIG does not stop a start.
	c, err := parseConfig([]string{"--simulate"}, func(k string) string {
		if k == "RDS_CSI_CHECK_CONFIG" {
			return "true"
		}
		return ""
	})
	if err != nil || c.checkConfig {
		t.Fatalf("RDS_CSI_CHECK_CONFIG=true: %v, check-config %v; want no effect", err, c != nil && c.checkConfig)
	}
}
