package metrics

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/srvlab/rds-csi/attach"
)

// settableCounts is an AttachmentSource whose counts a test sets; it
// counts how often Counts is called and emits events to its observers.
type settableCounts struct {
	mu        sync.Mutex
	c         attach.Counts
	calls     atomic.Int64
	observers map[int]func(attach.Event)
	next      int
}

func (s *settableCounts) AddObserver(f func(attach.Event)) (remove func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.observers == nil {
		s.observers = map[int]func(attach.Event){}
	}
	id := s.next
	s.next++
	s.observers[id] = f
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.observers, id)
	}
}

// emit hands e to every observer.
func (s *settableCounts) emit(e attach.Event) {
	s.mu.Lock()
	obs := make([]func(attach.Event), 0, len(s.observers))
	for _, f := range s.observers {
		obs = append(obs, f)
	}
	s.mu.Unlock()
	for _, f := range obs {
		f(e)
	}
}

func (s *settableCounts) observerCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.observers)
}

func (s *settableCounts) Counts() attach.Counts {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

func (s *settableCounts) set(c attach.Counts) {
	s.mu.Lock()
	s.c = c
	s.mu.Unlock()
}

// newReader returns a ManualReader-backed MeterProvider that is shut down
// at the end of the test.
func newReader(t testing.TB) (*sdkmetric.ManualReader, *sdkmetric.MeterProvider) {
	t.Helper()
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() {
		if err := mp.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown meter provider: %v", err)
		}
	})
	return r, mp
}

// newOTel builds an OTel closed at the end of the test and, when src is
// not nil, observing src.
func newOTel(t testing.TB, mp *sdkmetric.MeterProvider, src AttachmentSource, opts ...Option) *OTel {
	t.Helper()
	o, err := NewOTel(mp, opts...)
	if err != nil {
		t.Fatalf("NewOTel: %v", err)
	}
	t.Cleanup(func() { _ = o.Close() })
	if src != nil {
		if err := o.ObserveAttachments(src); err != nil {
			t.Fatalf("ObserveAttachments: %v", err)
		}
	}
	return o
}

// collected is one collection, indexed by instrument name.
type collected map[string]metricdata.Metrics

func collect(t testing.TB, r *sdkmetric.ManualReader) collected {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect: %v", err)
	}
	out := collected{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != MeterName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, MeterName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// gauge returns the single value of an int64 gauge without attributes and
// whether it is present.
func (c collected) gauge(t testing.TB, name string) (int64, bool) {
	t.Helper()
	m, ok := c[name]
	if !ok {
		return 0, false
	}
	g, ok := m.Data.(metricdata.Gauge[int64])
	if !ok {
		t.Fatalf("%s: data %T, want Gauge[int64]", name, m.Data)
	}
	if len(g.DataPoints) != 1 {
		t.Fatalf("%s: %d data points, want 1", name, len(g.DataPoints))
	}
	return g.DataPoints[0].Value, true
}

// points returns the values of an int64 sum or gauge by attribute set,
// encoded as "k=v,k=v".
func (c collected) points(t testing.TB, name string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	m, ok := c[name]
	if !ok {
		return out
	}
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		if !d.IsMonotonic {
			t.Errorf("%s: sum is not monotonic", name)
		}
		for _, p := range d.DataPoints {
			out[attrKey(p.Attributes)] = p.Value
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			out[attrKey(p.Attributes)] = p.Value
		}
	default:
		t.Fatalf("%s: data %T, want int64 sum or gauge", name, m.Data)
	}
	return out
}

// histogram returns count and sum by attribute set.
func (c collected) histogram(t testing.TB, name string) map[string]metricdata.HistogramDataPoint[float64] {
	t.Helper()
	out := map[string]metricdata.HistogramDataPoint[float64]{}
	m, ok := c[name]
	if !ok {
		return out
	}
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s: data %T, want Histogram[float64]", name, m.Data)
	}
	for _, p := range h.DataPoints {
		out[attrKey(p.Attributes)] = p
	}
	return out
}

func attrKey(s attribute.Set) string {
	var b []byte
	for i, kv := range s.ToSlice() {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, kv.Key...)
		b = append(b, '=')
		b = append(b, kv.Value.Emit()...)
	}
	return string(b)
}

const (
	instVolumes         = "rds_csi.nvme.connections.active"
	instNodeAttachments = "rds_csi.attachment.node_attachments.active"
	instMigrations      = "rds_csi.migration.active_migrations"
	instTimedOut        = "rds_csi.migration.timed_out_migrations"
)

// gauges reads the four attachment gauges; missing ones fail the test.
func (c collected) gauges(t testing.TB) attach.Counts {
	t.Helper()
	var out attach.Counts
	for name, dst := range map[string]*int{
		instVolumes:         &out.Volumes,
		instNodeAttachments: &out.NodeAttachments,
		instMigrations:      &out.Migrations,
		instTimedOut:        &out.TimedOutMigrations,
	} {
		v, ok := c.gauge(t, name)
		if !ok {
			t.Fatalf("gauge %s missing", name)
		}
		if v < 0 {
			t.Fatalf("gauge %s = %d, negative", name, v)
		}
		*dst = int(v)
	}
	return out
}
