package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/internal/testutil"
)

// pluginBin is examples/rds-csi-plugin, built once by TestMain.
var pluginBin string

func TestMain(m *testing.M) {
	os.Exit(testutil.MainWithBinary(m, "../rds-csi-plugin", "rds-csi-plugin", false, &pluginBin))
}

// startPlugin runs the simulated plugin and returns its endpoint and
// metrics URL. It is stopped with SIGTERM at the end of the test, and must
// exit 0.
func startPlugin(t *testing.T) (endpoint, metricsURL string) {
	t.Helper()
	dir := t.TempDir()
	endpoint = "unix://" + filepath.Join(dir, "csi.sock")
	cmd := exec.Command(pluginBin, "--simulate", "--endpoint", endpoint, "--node-id", "node-1",
		"--metrics-address", "127.0.0.1:0", "--log-format", "json")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RDS_CSI_") && !strings.HasPrefix(kv, "OTEL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logs testutil.SyncBuffer
	ready := make(chan string, 1)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "rds-csi-plugin: serving" {
				addr, _ := rec["metrics_address"].(string)
				ready <- addr
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("plugin exit after SIGTERM: %v", err)
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Error("plugin did not exit after SIGTERM")
		}
		if t.Failed() {
			t.Logf("plugin log:\n%s", logs.String())
		}
	})
	select {
	case addr := <-ready:
		return endpoint, "http://" + addr + "/metrics"
	case err := <-exited:
		t.Fatalf("plugin exited: %v\n%s", err, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatal("plugin not serving after 60s")
	}
	return "", ""
}

func loopAvailable() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "not root"
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return false, "no /dev/loop-control"
	}
	return true, ""
}

// gaugeAfter returns the value printed for gauge in the block of output
// that follows the named step.
func gaugeAfter(out, step, gauge string) string {
	_, rest, ok := strings.Cut(out, ". "+step+"\n")
	if !ok {
		return ""
	}
	for l := range strings.SplitSeq(rest, "\n") {
		if len(l) > 3 && l[2] == '.' { // next step
			break
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), gauge+" = "); ok {
			return v
		}
	}
	return ""
}

func TestLifecycle(t *testing.T) {
	for _, block := range []bool{false, true} {
		name := map[bool]string{false: "mount", true: "block"}[block]
		t.Run(name, func(t *testing.T) {
			endpoint, metricsURL := startPlugin(t)
			args := []string{"--endpoint", endpoint, "--metrics-url", metricsURL, "--work-dir", t.TempDir(), "--name", "lc-" + name}
			if block {
				args = append(args, "--block")
			}
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			err := run(ctx, args, &out)
			t.Logf("output:\n%s", out.String())
			const gauge = "rds_csi_nvme_connections_active"
			if got := gaugeAfter(out.String(), "ControllerPublishVolume", gauge); got != "1" {
				t.Errorf("%s after ControllerPublishVolume = %q, want 1", gauge, got)
			}
			if ok, why := loopAvailable(); !ok {
				// Staging needs loop devices; the tool must say why it
				// failed and undo the controller steps.
				if err == nil || !strings.Contains(err.Error(), "NodeStageVolume") || !strings.Contains(err.Error(), "loop") {
					t.Fatalf("without loop devices (%s): got %v, want a NodeStageVolume error about loop devices", why, err)
				}
				gs, serr := scrapeGauges(ctx, metricsURL)
				if serr != nil || !containsLine(gs, gauge+" = 0") {
					t.Fatalf("after cleanup: gauges %v, %v; want %s = 0", gs, serr, gauge)
				}
				return
			}
			if err != nil {
				t.Fatalf("lifecycle: %v", err)
			}
			for _, want := range []string{"NodeStageVolume", "wrote and read back 4096 bytes", "NodeGetVolumeStats", "lifecycle complete"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q", want)
				}
			}
			if got := gaugeAfter(out.String(), "ControllerUnpublishVolume", gauge); got != "0" {
				t.Errorf("%s after ControllerUnpublishVolume = %q, want 0", gauge, got)
			}
		})
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func TestBadEndpoint(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := run(ctx, []string{"--endpoint", "unix://" + filepath.Join(t.TempDir(), "absent.sock"), "--step-timeout", "2s"}, &out)
	if err == nil || !strings.Contains(err.Error(), "GetPluginInfo") {
		t.Fatalf("got %v, want a GetPluginInfo failure", err)
	}
}

// The default work directory is removed without descending into it: a
// file left inside (as a volume still mounted there would show) stays.
func TestRemoveWorkDirIsNotRecursive(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "work")
	for _, d := range []string{"staging", "target"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	kept := filepath.Join(dir, "target", "hello.txt")
	if err := os.WriteFile(kept, []byte("volume data"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	removeWorkDir(dir, &out)
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("a file under the target path was removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "staging")); !os.IsNotExist(err) {
		t.Errorf("empty staging path not removed: %v", err)
	}
	if !strings.Contains(out.String(), "left "+filepath.Join(dir, "target")) {
		t.Errorf("output does not say what was left: %q", out.String())
	}

	if err := os.Remove(kept); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	removeWorkDir(dir, &out)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("empty work directory not removed: %v (%s)", err, out.String())
	}
}
