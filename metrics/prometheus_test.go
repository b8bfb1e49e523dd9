package metrics

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/srvlab/rds-csi/attach"
)

// promTable is the documented contract: Prometheus name, type and labels
// (without the exporter's otel_scope_* labels).
var promTable = map[string]struct {
	typ    dto.MetricType
	labels []string
}{
	"rds_csi_nvme_connections_active":            {dto.MetricType_GAUGE, nil},
	"rds_csi_attachment_node_attachments_active": {dto.MetricType_GAUGE, nil},
	"rds_csi_migration_active_migrations":        {dto.MetricType_GAUGE, nil},
	"rds_csi_migration_timed_out_migrations":     {dto.MetricType_GAUGE, nil},
	"rds_csi_volume_operations_total":            {dto.MetricType_COUNTER, []string{"operation", "status"}},
	"rds_csi_volume_operation_duration_seconds":  {dto.MetricType_HISTOGRAM, []string{"operation"}},
	"rds_csi_rds_command_duration_seconds":       {dto.MetricType_HISTOGRAM, []string{"command", "status"}},
	"rds_csi_rds_connection_state":               {dto.MetricType_GAUGE, []string{"address"}},
	"rds_csi_rds_reconnect_total":                {dto.MetricType_COUNTER, []string{"status"}},
	"rds_csi_nvme_connects_total":                {dto.MetricType_COUNTER, []string{"status"}},
	"rds_csi_nvme_connect_duration_seconds":      {dto.MetricType_HISTOGRAM, nil},
	"rds_csi_mount_operations_total":             {dto.MetricType_COUNTER, []string{"operation", "status"}},
	"rds_csi_stale_mounts_detected_total":        {dto.MetricType_COUNTER, nil},
	"rds_csi_attachment_conflicts_total":         {dto.MetricType_COUNTER, nil},
	"rds_csi_attachment_reconcile_total":         {dto.MetricType_COUNTER, []string{"action"}},
	"rds_csi_migration_migrations_total":         {dto.MetricType_COUNTER, []string{"result"}},
	// Extra, beyond the table: disconnects have no metric there.
	"rds_csi_nvme_disconnects_total": {dto.MetricType_COUNTER, []string{"status"}},
}

// scrapeExporter wires OTel to the OTel Prometheus exporter on its own
// registry, serves it with promhttp on loopback and returns a scrape func.
func scrapeExporter(t *testing.T, cs AttachmentSource) (*OTel, func() map[string]*dto.MetricFamily) {
	t.Helper()
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatalf("exporter: %v", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	o := newOTel(t, mp, cs)

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	t.Cleanup(srv.Close)

	return o, func() map[string]*dto.MetricFamily {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatalf("scrape: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("scrape status %s", resp.Status)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Fatalf("scrape content type %q, want the text format", ct)
		}
		p := expfmt.NewTextParser(model.LegacyValidation)
		mfs, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatalf("parse scrape: %v", err)
		}
		return mfs
	}
}

// seriesKey renders a sample's labels, without otel_scope_*, as "k=v,k=v".
func seriesKey(m *dto.Metric) string {
	var kv []string
	for _, l := range m.GetLabel() {
		if !strings.HasPrefix(l.GetName(), "otel_scope_") {
			kv = append(kv, l.GetName()+"="+l.GetValue())
		}
	}
	slices.Sort(kv)
	return strings.Join(kv, ",")
}

func labelNames(m *dto.Metric) []string {
	var names []string
	for _, l := range m.GetLabel() {
		if !strings.HasPrefix(l.GetName(), "otel_scope_") {
			names = append(names, l.GetName())
		}
	}
	slices.Sort(names)
	return names
}

func scopeName(m *dto.Metric) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == "otel_scope_name" {
			return l.GetValue()
		}
	}
	return ""
}

func TestPrometheusExposition(t *testing.T) {
	// A real Manager: pvc-a and pvc-b migrating (pvc-b past its
	// timeout), pvc-c on one node.
	clock := &fakeClock{}
	clock.set(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	m := newManager(t, attach.NewMemStore(), attach.WithClock(clock.now))
	for _, r := range []attach.Request{
		{VolumeID: "pvc-a", NodeID: "node-1", Mode: attach.Migratable, MigrationTimeout: time.Hour},
		{VolumeID: "pvc-a", NodeID: "node-2", Mode: attach.Migratable, MigrationTimeout: time.Hour},
		{VolumeID: "pvc-b", NodeID: "node-1", Mode: attach.Migratable, MigrationTimeout: time.Minute},
		{VolumeID: "pvc-b", NodeID: "node-3", Mode: attach.Migratable, MigrationTimeout: time.Minute},
		{VolumeID: "pvc-c", NodeID: "node-2", Mode: attach.Exclusive},
	} {
		mustAttach(t, m, r)
	}
	clock.advance(5 * time.Minute)
	o, scrape := scrapeExporter(t, m)
	ctx := context.Background()

	o.RPC(ctx, "CreateVolume", "OK", 20*time.Millisecond)
	o.RPC(ctx, "CreateVolume", "OK", 20*time.Millisecond)
	o.RPC(ctx, "/csi.v1.Node/NodeStageVolume", "Aborted", 2*time.Second)
	o.RDSCommand(ctx, "disk add", "ok", 30*time.Millisecond)
	o.RDSCommand(ctx, "disk print", "not_found", 7*time.Millisecond)
	o.RDSConnectionState(ctx, "10.0.0.1:22", false)
	o.RDSConnectionState(ctx, "10.0.0.1:22", true)
	o.RDSConnectionState(ctx, "10.0.0.2:22", false)
	o.RDSReconnect(ctx, "ok")
	o.RDSReconnect(ctx, "error")
	o.RDSReconnect(ctx, "error")
	o.NVMeConnect(ctx, "ok", 1500*time.Millisecond)
	o.NVMeConnect(ctx, "error", 40*time.Second)
	o.NVMeDisconnect(ctx, "ok", time.Second)
	o.MountOperation(ctx, "format", "ok", time.Second)
	o.MountOperation(ctx, "mount", "ok", time.Millisecond)
	o.MountOperation(ctx, "mount", "ok", time.Millisecond)
	o.MountOperation(ctx, "unmount", "error", time.Millisecond)
	o.StaleMount(ctx)
	for range 3 {
		o.AttachmentConflict(ctx)
	}
	o.Reconcile(ctx, "cleared", 4)
	o.Reconcile(ctx, "kept", 10)
	o.Migration(ctx, "started")
	o.Migration(ctx, "success")
	o.Migration(ctx, "success")
	o.Migration(ctx, "timeout")

	mfs := scrape()

	// Exactly the table, plus the exporter's target_info.
	var got []string
	for name := range mfs {
		if name != "target_info" {
			got = append(got, name)
		}
	}
	slices.Sort(got)
	var want []string
	for name := range promTable {
		want = append(want, name)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("metric families:\ngot  %v\nwant %v", got, want)
	}

	for name, w := range promTable {
		mf := mfs[name]
		if mf.GetType() != w.typ {
			t.Errorf("%s: type %v, want %v", name, mf.GetType(), w.typ)
		}
		if strings.TrimSpace(mf.GetHelp()) == "" {
			t.Errorf("%s: empty HELP", name)
		}
		for _, m := range mf.GetMetric() {
			if got := labelNames(m); !slices.Equal(got, w.labels) {
				t.Errorf("%s: labels %v, want %v", name, got, w.labels)
			}
			if s := scopeName(m); s != MeterName {
				t.Errorf("%s: otel_scope_name %q, want %q", name, s, MeterName)
			}
		}
	}

	// Values of counters and gauges, by series.
	values := map[string]map[string]float64{
		"rds_csi_nvme_connections_active":            {"": 3},
		"rds_csi_attachment_node_attachments_active": {"": 5},
		"rds_csi_migration_active_migrations":        {"": 2},
		"rds_csi_migration_timed_out_migrations":     {"": 1},
		"rds_csi_volume_operations_total": {
			"operation=CreateVolume,status=OK":         2,
			"operation=NodeStageVolume,status=Aborted": 1,
		},
		"rds_csi_rds_connection_state":        {"address=10.0.0.1:22": 1, "address=10.0.0.2:22": 0},
		"rds_csi_rds_reconnect_total":         {"status=ok": 1, "status=error": 2},
		"rds_csi_nvme_connects_total":         {"status=ok": 1, "status=error": 1},
		"rds_csi_nvme_disconnects_total":      {"status=ok": 1},
		"rds_csi_mount_operations_total":      {"operation=format,status=ok": 1, "operation=mount,status=ok": 2, "operation=unmount,status=error": 1},
		"rds_csi_stale_mounts_detected_total": {"": 1},
		"rds_csi_attachment_conflicts_total":  {"": 3},
		"rds_csi_attachment_reconcile_total":  {"action=cleared": 4, "action=kept": 10},
		// One timeout reported above, one by the Manager when the
		// collection's Counts finds pvc-b past its timeout.
		"rds_csi_migration_migrations_total": {"result=success": 2, "result=timeout": 2},
	}
	for name, want := range values {
		got := map[string]float64{}
		for _, m := range mfs[name].GetMetric() {
			switch {
			case m.Counter != nil:
				got[seriesKey(m)] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				got[seriesKey(m)] = m.GetGauge().GetValue()
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}

	// Histograms: count, sum and one cumulative bucket per series.
	type hist struct {
		count    uint64
		sum      float64
		le       float64
		inBucket uint64
	}
	hists := map[string]map[string]hist{
		"rds_csi_volume_operation_duration_seconds": {
			"operation=CreateVolume":    {2, 0.04, 0.025, 2},
			"operation=NodeStageVolume": {1, 2, 1, 0},
		},
		"rds_csi_rds_command_duration_seconds": {
			"command=disk add,status=ok":          {1, 0.03, 0.025, 0},
			"command=disk print,status=not_found": {1, 0.007, 0.01, 1},
		},
		"rds_csi_nvme_connect_duration_seconds": {"": {2, 41.5, 2.5, 1}},
	}
	for name, want := range hists {
		mf := mfs[name]
		if len(mf.GetMetric()) != len(want) {
			t.Errorf("%s: %d series, want %d", name, len(mf.GetMetric()), len(want))
		}
		for _, m := range mf.GetMetric() {
			k := seriesKey(m)
			w, ok := want[k]
			if !ok {
				t.Errorf("%s: unexpected series %q", name, k)
				continue
			}
			h := m.GetHistogram()
			if h.GetSampleCount() != w.count || math.Abs(h.GetSampleSum()-w.sum) > 1e-9 {
				t.Errorf("%s{%s}: count %d sum %v, want %d and %v", name, k, h.GetSampleCount(), h.GetSampleSum(), w.count, w.sum)
			}
			var les []float64
			found := false
			for _, b := range h.GetBucket() {
				les = append(les, b.GetUpperBound())
				if b.GetUpperBound() == w.le {
					found = true
					if b.GetCumulativeCount() != w.inBucket {
						t.Errorf("%s{%s} le=%v: %d, want %d", name, k, w.le, b.GetCumulativeCount(), w.inBucket)
					}
				}
			}
			if !found {
				t.Errorf("%s{%s}: no bucket le=%v", name, k, w.le)
			}
			if !slices.Equal(les, defaultBuckets) && !slices.Equal(les, append(slices.Clone(defaultBuckets), math.Inf(1))) {
				t.Errorf("%s{%s}: buckets %v, want %v", name, k, les, defaultBuckets)
			}
		}
	}

	// The rules promtool check metrics applies, via the library it uses.
	var all []*dto.MetricFamily
	for _, mf := range mfs {
		all = append(all, mf)
	}
	problems, err := promlint.NewWithMetricFamilies(all).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestPromlintCatchesBadNames proves the lint check above can fail.
func TestPromlintCatchesBadNames(t *testing.T) {
	text := "# TYPE rds_csi_bad counter\nrds_csi_bad 1\n# HELP rds_csi_latency_ms x\n# TYPE rds_csi_latency_ms histogram\nrds_csi_latency_ms_bucket{le=\"+Inf\"} 1\nrds_csi_latency_ms_sum 1\nrds_csi_latency_ms_count 1\n"
	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	var texts []string
	for _, p := range problems {
		texts = append(texts, p.Metric+": "+p.Text)
	}
	joined := strings.Join(texts, "\n")
	for _, want := range []string{"no help text", `"_total" suffix`, "abbreviated units"} {
		if !strings.Contains(joined, want) {
			t.Errorf("promlint did not report %q; got:\n%s", want, joined)
		}
	}
}
