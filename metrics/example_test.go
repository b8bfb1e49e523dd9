package metrics_test

import (
	"context"
	"errors"
	"fmt"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/metrics"
)

// fixedCounts stands in for an *attach.Manager.
type fixedCounts attach.Counts

func (f fixedCounts) Counts() attach.Counts { return attach.Counts(f) }

func ExampleNewOTel() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(ctx) }()

	// One volume migrating between two nodes, one attached to one node.
	rec, err := metrics.NewOTel(mp, fixedCounts{Volumes: 2, NodeAttachments: 3, Migrations: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = rec.Close() }()

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		fmt.Println(err)
		return
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "rds_csi.nvme.connections.active" {
				fmt.Println("connections:", m.Data.(metricdata.Gauge[int64]).DataPoints[0].Value)
			}
		}
	}
	// Output: connections: 2
}

// The recorder takes the Manager as its CountSource, so it is built after
// the Manager and then added as one of its observers.
func ExampleAttachObserver() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(ctx) }()

	m, err := attach.NewManager(ctx, attach.NewMemStore())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = m.Close() }()
	rec, err := metrics.NewOTel(mp, m)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = rec.Close() }()
	defer m.AddObserver(metrics.AttachObserver(rec))()

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
