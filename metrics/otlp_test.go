package metrics

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/srvlab/rds-csi/attach"
)

// otlpReceiver is a loopback OTLP/HTTP endpoint that keeps every metric it
// receives, as an OpenTelemetry Collector's otlp receiver would.
type otlpReceiver struct {
	mu      sync.Mutex
	metrics []*metricpb.Metric
	scopes  []*metricpb.ScopeMetrics
}

func (rcv *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var in io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" { // OTEL_EXPORTER_OTLP_COMPRESSION may ask for it
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		in = zr
	}
	body, err := io.ReadAll(in)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req colmetricpb.ExportMetricsServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rcv.mu.Lock()
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			rcv.scopes = append(rcv.scopes, sm)
			rcv.metrics = append(rcv.metrics, sm.GetMetrics()...)
		}
	}
	rcv.mu.Unlock()
	resp, _ := proto.Marshal(&colmetricpb.ExportMetricsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

// promView is how a Prometheus consumer of OTLP (the Collector's
// prometheus and prometheusremotewrite exporters, Prometheus' own OTLP
// receiver) types and names a metric: with otlptranslator and its default
// strategy, the same library and default the OTel Go exporter uses.
func promView(t *testing.T, m *metricpb.Metric) (string, dto.MetricType) {
	t.Helper()
	var kind otlptranslator.MetricType
	var typ dto.MetricType
	switch d := m.GetData().(type) {
	case *metricpb.Metric_Sum:
		if !d.Sum.GetIsMonotonic() {
			kind, typ = otlptranslator.MetricTypeNonMonotonicCounter, dto.MetricType_GAUGE
		} else {
			kind, typ = otlptranslator.MetricTypeMonotonicCounter, dto.MetricType_COUNTER
		}
	case *metricpb.Metric_Gauge:
		kind, typ = otlptranslator.MetricTypeGauge, dto.MetricType_GAUGE
	case *metricpb.Metric_Histogram:
		kind, typ = otlptranslator.MetricTypeHistogram, dto.MetricType_HISTOGRAM
	default:
		t.Fatalf("%s: unexpected OTLP data %T", m.GetName(), d)
	}
	namer := otlptranslator.NewMetricNamer("", otlptranslator.UnderscoreEscapingWithSuffixes)
	name, err := namer.Build(otlptranslator.Metric{Name: m.GetName(), Unit: m.GetUnit(), Type: kind})
	if err != nil {
		t.Fatalf("%s: translate: %v", m.GetName(), err)
	}
	return name, typ
}

// Pushed over OTLP to a Collector that re-exposes them for Prometheus, the
// metrics land on the same names and types as through the OTel Prometheus
// exporter. This sends real OTLP/HTTP protobuf to a loopback receiver and
// applies the translation those consumers use to what arrived.
func TestOTLPNamesMatchPrometheusTable(t *testing.T) {
	ctx := context.Background()
	rcv := &otlpReceiver{}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	exp, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(srv.URL+"/v1/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(
		sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))))
	src := &settableCounts{}
	src.set(attach.Counts{Volumes: 3, NodeAttachments: 4, Migrations: 1, TimedOutMigrations: 1})
	o := newOTel(t, mp, src)
	recordEveryInstrument(o)
	if err := mp.Shutdown(ctx); err != nil { // flushes once
		t.Fatalf("shutdown: %v", err)
	}

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	got := map[string]dto.MetricType{}
	for _, m := range rcv.metrics {
		name, typ := promView(t, m)
		if _, dup := got[name]; dup {
			t.Errorf("%s (from %s) exported twice", name, m.GetName())
		}
		got[name] = typ
		if m.GetDescription() == "" {
			t.Errorf("%s: no description (Prometheus HELP)", m.GetName())
		}
	}
	for name, w := range promTable {
		typ, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s: not among the translated OTLP names", name)
		case typ != w.typ:
			t.Errorf("%s: type %v over OTLP, want %v", name, typ, w.typ)
		}
	}
	for name := range got {
		if _, ok := promTable[name]; !ok {
			t.Errorf("%s: translated OTLP name not in the table", name)
		}
	}
	for _, sm := range rcv.scopes {
		if sm.GetScope().GetName() != MeterName || sm.GetScope().GetVersion() != moduleVersion() {
			t.Errorf("scope %q %q, want %q %q", sm.GetScope().GetName(), sm.GetScope().GetVersion(), MeterName, moduleVersion())
		}
	}
}

// recordEveryInstrument records once on every synchronous instrument, so
// that each appears in a collection.
func recordEveryInstrument(o *OTel) {
	ctx := context.Background()
	o.RPC(ctx, "CreateVolume", "OK", time.Millisecond)
	o.RDSCommand(ctx, "disk add", "ok", time.Millisecond)
	o.RDSConnectionState(ctx, "10.0.0.1:22", true)
	o.RDSReconnect(ctx, "ok")
	o.NVMeConnect(ctx, "ok", time.Millisecond)
	o.NVMeDisconnect(ctx, "ok", time.Millisecond)
	o.MountOperation(ctx, "mount", "ok", time.Millisecond)
	o.StaleMount(ctx)
	o.AttachmentConflict(ctx)
	o.Reconcile(ctx, "cleared", 1)
	o.Migration(ctx, "success")
}

// The meter carries this module's version, so otel_scope_version is set.
func TestScopeVersion(t *testing.T) {
	r, mp := newReader(t)
	newOTel(t, mp, &settableCounts{})
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	if len(rm.ScopeMetrics) != 1 {
		t.Fatalf("%d scopes, want 1", len(rm.ScopeMetrics))
	}
	// A test binary's main module is this one, stamped "(devel)".
	if v := rm.ScopeMetrics[0].Scope.Version; v == "" || v != moduleVersion() {
		t.Fatalf("scope version %q, want the module version %q", v, moduleVersion())
	}
}

func TestVersionOf(t *testing.T) {
	const path = "github.com/srvlab/rds-csi"
	dep := func(v string, replace *debug.Module) *debug.Module {
		return &debug.Module{Path: path, Version: v, Replace: replace}
	}
	other := &debug.Module{Path: "example.com/other", Version: "v9.9.9"}
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"main module", debug.BuildInfo{Main: debug.Module{Path: path, Version: "v0.0.0-20250101000000-abcdef123456+dirty"}},
			"v0.0.0-20250101000000-abcdef123456+dirty"},
		{"dependency", debug.BuildInfo{Main: debug.Module{Path: "example.com/driver"}, Deps: []*debug.Module{other, dep("v1.2.3", nil)}},
			"v1.2.3"},
		{"replaced by a module", debug.BuildInfo{Main: debug.Module{Path: "example.com/driver"},
			Deps: []*debug.Module{dep("v1.2.3", &debug.Module{Path: "example.com/fork", Version: "v1.2.4"})}}, "v1.2.4"},
		{"replaced by a directory", debug.BuildInfo{Main: debug.Module{Path: "example.com/driver"},
			Deps: []*debug.Module{dep("v1.2.3", &debug.Module{Path: "../rds-csi"})}}, "v1.2.3"},
		{"absent", debug.BuildInfo{Main: debug.Module{Path: "example.com/driver"}, Deps: []*debug.Module{other}}, ""},
	} {
		if got := versionOf(&tc.bi, path); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
