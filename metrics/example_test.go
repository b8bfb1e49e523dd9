package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/metrics"
)

func ExampleNewOTel() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(ctx) }()

	rec, err := metrics.NewOTel(mp)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = rec.Close() }()
	rec.RPC(ctx, "CreateVolume", "OK", 40*time.Millisecond)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		fmt.Println(err)
		return
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "rds_csi.volume.operations" {
				fmt.Println("operations:", m.Data.(metricdata.Sum[int64]).DataPoints[0].Value)
			}
		}
	}
	// Output: operations: 1
}

// The recorder comes first, then the Manager, then one call registers the
// attachment gauges and the event observer; Close undoes both.
func ExampleOTel_ObserveAttachments() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(ctx) }()

	rec, err := metrics.NewOTel(mp)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = rec.Close() }()
	m, err := attach.NewManager(ctx, attach.NewMemStore())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = m.Close() }()
	if err := rec.ObserveAttachments(m); err != nil {
		fmt.Println(err)
		return
	}

	_ = m.Attach(ctx, attach.Request{VolumeID: "pvc-1", NodeID: "node-a", Mode: attach.Exclusive})
	err = m.Attach(ctx, attach.Request{VolumeID: "pvc-1", NodeID: "node-b", Mode: attach.Exclusive})
	fmt.Println("refused:", errors.Is(err, attach.ErrConflict))

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		fmt.Println(err)
		return
	}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			switch mt.Name {
			case "rds_csi.attachment.conflicts":
				fmt.Println("conflicts:", mt.Data.(metricdata.Sum[int64]).DataPoints[0].Value)
			case "rds_csi.nvme.connections.active":
				fmt.Println("connections:", mt.Data.(metricdata.Gauge[int64]).DataPoints[0].Value)
			}
		}
	}
	// Unordered output:
	// refused: true
	// conflicts: 1
	// connections: 1
}

// conflictLog is a Recorder of one's own: it embeds Noop and keeps what
// it needs.
type conflictLog struct {
	metrics.Noop
	n atomic.Int64
}

func (c *conflictLog) AttachmentConflict(context.Context) { c.n.Add(1) }

// A Recorder other than OTel receives attachment events through
// AttachObserver.
func ExampleAttachObserver() {
	ctx := context.Background()
	m, err := attach.NewManager(ctx, attach.NewMemStore())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = m.Close() }()
	rec := &conflictLog{}
	defer m.AddObserver(metrics.AttachObserver(rec))()

	_ = m.Attach(ctx, attach.Request{VolumeID: "pvc-1", NodeID: "node-a", Mode: attach.Exclusive})
	_ = m.Attach(ctx, attach.Request{VolumeID: "pvc-1", NodeID: "node-b", Mode: attach.Exclusive})
	fmt.Println("conflicts:", rec.n.Load())
	// Output: conflicts: 1
}
