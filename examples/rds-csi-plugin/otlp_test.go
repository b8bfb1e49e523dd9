package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/srvlab/rds-csi/internal/testutil"
)

// otlpActiveGauge is the OTLP name of the gauge Prometheus shows as
// rds_csi_nvme_connections_active: OTLP carries the raw instrument name;
// the Prometheus exporter turns dots into underscores.
const otlpActiveGauge = "rds_csi.nvme.connections.active"

// otlpSink collects the export requests an OTLP receiver gets.
type otlpSink struct {
	colmetricspb.UnimplementedMetricsServiceServer

	mu   sync.Mutex
	reqs []*colmetricspb.ExportMetricsServiceRequest
	grew chan struct{}
}

func newOTLPSink() *otlpSink { return &otlpSink{grew: make(chan struct{})} }

func (s *otlpSink) add(req *colmetricspb.ExportMetricsServiceRequest) {
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	close(s.grew)
	s.grew = make(chan struct{})
	s.mu.Unlock()
}

// Export implements the OTLP/gRPC metrics service.
func (s *otlpSink) Export(_ context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	s.add(proto.Clone(req).(*colmetricspb.ExportMetricsServiceRequest))
	return &colmetricspb.ExportMetricsServiceResponse{}, nil
}

// ServeHTTP implements OTLP/HTTP with protobuf bodies.
func (s *otlpSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/metrics" {
		http.Error(w, "not an OTLP metrics export", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req colmetricspb.ExportMetricsServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.add(&req)
	out, _ := proto.Marshal(&colmetricspb.ExportMetricsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// gaugePoint is the latest value of an int gauge and its resource.
type gaugePoint struct {
	value    int64
	resource map[string]string
}

// latest returns the last exported point of the named int gauge.
func (s *otlpSink) latest(name string) (gaugePoint, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.reqs) - 1; i >= 0; i-- {
		for _, rm := range s.reqs[i].GetResourceMetrics() {
			for _, sm := range rm.GetScopeMetrics() {
				for _, m := range sm.GetMetrics() {
					if m.GetName() != name || m.GetGauge() == nil {
						continue
					}
					dps := m.GetGauge().GetDataPoints()
					if len(dps) == 0 {
						continue
					}
					return gaugePoint{
						value:    dps[len(dps)-1].GetAsInt(),
						resource: attrMap(rm.GetResource().GetAttributes()),
					}, true
				}
			}
		}
	}
	return gaugePoint{}, false
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	return m
}

// waitGauge waits until the named gauge's latest exported value is want.
func (s *otlpSink) waitGauge(t *testing.T, name string, want int64, timeout time.Duration) gaugePoint {
	t.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		grew := s.grew
		s.mu.Unlock()
		if p, ok := s.latest(name); ok && p.value == want {
			return p
		}
		select {
		case <-grew:
		case <-deadline:
			p, ok := s.latest(name)
			t.Fatalf("no OTLP export of %s = %d within %v (latest: %+v, found %v)", name, want, timeout, p, ok)
		}
	}
}

// The plugin pushes its metrics over OTLP (gRPC and HTTP) when the
// standard OpenTelemetry variables ask for it, with the resource
// attributes a collector needs.
func TestOTLPExport(t *testing.T) {
	ver := versionOf(t)
	cases := []struct {
		name     string
		protocol string
		// env builds the endpoint variables from the receiver's address.
		env         func(addr string) []string
		serviceName string
		// resource is OTEL_RESOURCE_ATTRIBUTES; instanceID the
		// service.instance.id expected (the node ID unless resource sets
		// one).
		resource, instanceID string
	}{
		{"grpc", protoGRPC, func(addr string) []string {
			return []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + addr, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"}
		}, serviceName, "deployment.environment.name=otlp-test", "n1"},
		{"http", protoHTTP, func(addr string) []string {
			return []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + addr, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"}
		}, serviceName, "deployment.environment.name=otlp-test", "n1"},
		// The per-signal endpoint is used as is (with its path), the
		// protocol defaults to http/protobuf, and OTEL_SERVICE_NAME and
		// OTEL_RESOURCE_ATTRIBUTES win over the plugin's own attributes.
		{"http metrics endpoint", protoHTTP, func(addr string) []string {
			return []string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=http://" + addr + "/v1/metrics", "OTEL_SERVICE_NAME=rds-csi-lab"}
		}, "rds-csi-lab", "deployment.environment.name=otlp-test,service.instance.id=lab-1", "lab-1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := newOTLPSink()
			var addr string
			if tc.protocol == protoGRPC {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				gs := grpc.NewServer()
				colmetricspb.RegisterMetricsServiceServer(gs, sink)
				go gs.Serve(l)
				t.Cleanup(gs.Stop)
				addr = l.Addr().String()
			} else {
				hs := httptest.NewServer(sink)
				t.Cleanup(hs.Close)
				addr = hs.Listener.Addr().String()
			}

			dir := t.TempDir()
			env := append(tc.env(addr),
				"OTEL_METRIC_EXPORT_INTERVAL=200",
				"OTEL_RESOURCE_ATTRIBUTES="+tc.resource,
			)
			s := startServing(t, env, "--simulate", "--mode", "controller", "--node-id", "n1", "--log-format", "json",
				"--endpoint", "unix://"+filepath.Join(dir, "csi.sock"))

			sink.waitGauge(t, otlpActiveGauge, 0, 30*time.Second)
			ctrl := csi.NewControllerClient(s.conn)
			vol := createVolume(t, ctrl, "otlp-"+strings.ReplaceAll(tc.name, " ", "-"))
			if _, err := publish(t, ctrl, vol, "n1"); err != nil {
				t.Fatalf("ControllerPublishVolume: %v", err)
			}
			p := sink.waitGauge(t, otlpActiveGauge, 1, 30*time.Second)
			for k, v := range map[string]string{
				"service.name":                tc.serviceName,
				"service.version":             ver,
				"deployment.environment.name": "otlp-test",
				"service.instance.id":         tc.instanceID,
				"telemetry.sdk.language":      "go",
			} {
				if p.resource[k] != v {
					t.Errorf("resource attribute %s = %q, want %q (all: %v)", k, p.resource[k], v, p.resource)
				}
			}

			s.signal(syscall.SIGTERM)
			if code := s.wait(10 * time.Second); code != 0 {
				t.Fatalf("exit code after SIGTERM = %d, want 0", code)
			}
		})
	}
}

// counterValue sums the exported points of an int counter whose
// attributes include attrs, over the last request that has it.
func (s *otlpSink) counterValue(name string, attrs map[string]string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.reqs) - 1; i >= 0; i-- {
		for _, rm := range s.reqs[i].GetResourceMetrics() {
			for _, sm := range rm.GetScopeMetrics() {
				for _, m := range sm.GetMetrics() {
					if m.GetName() != name || m.GetSum() == nil {
						continue
					}
					var total int64
					found := false
				points:
					for _, dp := range m.GetSum().GetDataPoints() {
						got := attrMap(dp.GetAttributes())
						for k, v := range attrs {
							if got[k] != v {
								continue points
							}
						}
						total += dp.GetAsInt()
						found = true
					}
					if found {
						return total, true
					}
				}
			}
		}
	}
	return 0, false
}

// With an export interval far beyond the test, only the flush at shutdown
// can deliver the metrics: SIGTERM must flush them.
func TestOTLPFlushOnShutdown(t *testing.T) {
	sink := newOTLPSink()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	colmetricspb.RegisterMetricsServiceServer(gs, sink)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)

	dir := t.TempDir()
	s := startServing(t, []string{
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=http://" + l.Addr().String(),
		"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=grpc",
		"OTEL_METRIC_EXPORT_INTERVAL=600000",
	}, "--simulate", "--mode", "controller", "--node-id", "n1", "--log-format", "json",
		"--endpoint", "unix://"+filepath.Join(dir, "csi.sock"))
	ctrl := csi.NewControllerClient(s.conn)
	vol := createVolume(t, ctrl, "flush")
	if _, err := publish(t, ctrl, vol, "n1"); err != nil {
		t.Fatalf("ControllerPublishVolume: %v", err)
	}
	if _, ok := sink.latest(otlpActiveGauge); ok {
		t.Fatal("an export arrived before shutdown; the interval was not applied")
	}
	s.signal(syscall.SIGTERM)
	if code := s.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	if p, ok := sink.latest(otlpActiveGauge); !ok || p.value != 1 {
		t.Fatalf("final export: %s = %+v (found %v), want 1", otlpActiveGauge, p, ok)
	}
	n, ok := sink.counterValue("rds_csi.volume.operations", map[string]string{"operation": "CreateVolume", "status": "OK"})
	if !ok || n != 1 {
		t.Fatalf("final export: CreateVolume OK count = %d (found %v), want 1", n, ok)
	}
}

// jsonRecords parses every line of out as a JSON log record; a line that
// is not one (plain text from a library's own logger) fails the test.
func jsonRecords(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Errorf("not a JSON log record: %q", l)
			continue
		}
		recs = append(recs, rec)
	}
	return recs
}

// What the OpenTelemetry SDK reports about itself, its log lines and the
// errors it hands to otel.Handle, goes through the plugin's slog logger.
func TestOTelDiagnosticsGoToSlog(t *testing.T) {
	var buf testutil.SyncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tel, err := startTelemetry(context.Background(), &config{}, envOf(), "test", logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tel.shutdown(context.Background())
		otel.SetLogger(logr.Discard())
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(error) {}))
	})

	// The SDK logs a reader registered with two providers at Error, and
	// an empty meter name at Warn.
	reader := sdkmetric.NewManualReader()
	mp1 := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	mp2 := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	mp1.Meter("")
	mp1.Shutdown(context.Background())
	mp2.Shutdown(context.Background())
	otel.Handle(errors.New("collector said no"))

	found := map[string]bool{}
	for _, rec := range jsonRecords(t, buf.String()) {
		if rec["component"] != "opentelemetry" {
			t.Errorf("record without component=opentelemetry: %v", rec)
		}
		msg, _ := rec["msg"].(string)
		switch {
		case msg == "did not register manual reader" && rec["err"] == "duplicate reader registration" && rec["level"] == "ERROR":
			found["sdk error"] = true
		case msg == "Invalid Meter name." && rec["level"] == slog.Level(-1).String():
			found["sdk warning"] = true
		case msg == "opentelemetry error" && rec["level"] == "WARN" && rec["err"] == "collector said no":
			found["handled error"] = true
		}
	}
	for _, want := range []string{"sdk error", "sdk warning", "handled error"} {
		if !found[want] {
			t.Errorf("no %s record in:\n%s", want, buf.String())
		}
	}
}

// An OTLP collector that refuses connections: the failed exports are
// logged as JSON records at Warn, and nothing is written as plain text.
func TestOTLPExportErrorIsLogged(t *testing.T) {
	for _, protocol := range []string{protoGRPC, protoHTTP} {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := startServing(t, []string{
				"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + closedPort(t),
				"OTEL_EXPORTER_OTLP_PROTOCOL=" + protocol,
				"OTEL_METRIC_EXPORT_INTERVAL=100",
				"OTEL_METRIC_EXPORT_TIMEOUT=500",
				"OTEL_EXPORTER_OTLP_TIMEOUT=500",
			}, "--simulate", "--mode", "controller", "--node-id", "n1", "--log-format", "json",
				"--endpoint", "unix://"+filepath.Join(dir, "csi.sock"))
			rec := s.waitLog("opentelemetry error", 30*time.Second)
			if rec["level"] != "WARN" || rec["component"] != "opentelemetry" {
				t.Errorf("export error record: %v", rec)
			}
			if e, _ := rec["err"].(string); !strings.Contains(e, "refused") {
				t.Errorf("export error %q does not say the connection was refused", e)
			}
			s.signal(syscall.SIGTERM)
			if code := s.wait(10 * time.Second); code != 0 {
				t.Fatalf("exit code after SIGTERM = %d, want 0", code)
			}
			jsonRecords(t, s.stderr())
		})
	}
}
