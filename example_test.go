package rds_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/metrics"
	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
	"github.com/srvlab/rds-csi/rdscsi"
)

// Example wires a controller plugin from the packages, in the one order
// that needs no glue: recorder, RDS client, attachment manager, gauges,
// servers. The lines between the embed markers are what README.md and
// examples/README.md show (a test keeps them equal); around them, an
// rdstest fake stands in for the RDS and a CSI client drives the plugin,
// so the wiring is proven by running it.
func Example() {
	fake, err := rdstest.NewServer()
	if err != nil {
		log.Fatal(err)
	}
	defer fake.Close()
	dir, err := os.MkdirTemp("", "rds-csi-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	rdsAddr, rdsConfig := fake.Addr(), fake.ClientConfig() // a real RDS: its address, your key, its pinned host key
	statePath := filepath.Join(dir, "attachments.log")
	endpoint := "unix://" + filepath.Join(dir, "csi.sock")
	reader := sdkmetric.NewManualReader() // a real plugin uses an exporter: Prometheus, OTLP
	meterProvider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	logger := slog.New(slog.DiscardHandler)
	nodeExists := func(ctx context.Context, nodeID string) (bool, error) { return nodeID == "node-1", nil }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// embed:begin
	// 1. The recorder first: everything below reports to it.
	rec, err := metrics.NewOTel(meterProvider) // any metric.MeterProvider
	if err != nil {
		log.Fatal(err)
	}
	defer rec.Close()

	// 2. The RDS, reporting each command (rds_csi_rds_command_duration_seconds).
	//    rdsConfig holds the user, the SSH key and the pinned host key.
	client, err := rdsclient.Dial(ctx, rdsAddr, rdsConfig, rdsclient.WithObserver(rec))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	// 3. Durable attachments, then the gauges and events that read them.
	store, err := attach.NewFileStore(statePath)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	manager, err := attach.NewManager(ctx, store)
	if err != nil {
		log.Fatal(err)
	}
	defer manager.Close()
	if err := rec.ObserveAttachments(manager); err != nil { // undone by rec.Close
		log.Fatal(err)
	}
	go manager.Run(ctx) // fires migration timeouts; ends with ctx or Close

	// 4. The CSI servers on your gRPC server. WithLogger, WithRecorder,
	//    WithTopology and WithMaxVolumesPerNode configure a NodeServer too.
	ctrl, err := rdscsi.NewControllerServer(client, manager,
		rdscsi.WithLogger(logger),
		rdscsi.WithRecorder(rec),
		rdscsi.WithVolumePath("/storage-pool/k8s"),
		rdscsi.WithNVMeAddress("10.0.0.5"),
		rdscsi.WithNodeLookup(nodeExists)) // without it, every node ID is accepted
	if err != nil {
		log.Fatal(err)
	}
	ids, err := rdscsi.NewIdentityServer("my.csi.example.com", "v1.0.0", rdscsi.WithController(ctrl))
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor( // logging (no secrets), metrics, one RPC per volume
		rdscsi.LoggingInterceptor(logger),
		rdscsi.MetricsInterceptor(rec),
		rdscsi.SerializeInterceptor()))
	ids.Register(srv)
	ctrl.Register(srv)
	lis, err := rdscsi.Listen(endpoint)
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.GracefulStop()
	// embed:end

	// A CO's calls: create a volume and publish it to node-1.
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	cc := csi.NewControllerClient(conn)
	rpcCtx, done := context.WithTimeout(ctx, 30*time.Second)
	defer done()
	vol, err := cc.CreateVolume(rpcCtx, &csi.CreateVolumeRequest{
		Name:               "pvc-example",
		CapacityRange:      &csi.CapacityRange{RequiredBytes: 1 << 30},
		VolumeCapabilities: []*csi.VolumeCapability{exampleRWO},
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := cc.ControllerPublishVolume(rpcCtx, &csi.ControllerPublishVolumeRequest{
		VolumeId: vol.Volume.VolumeId, NodeId: "node-1", VolumeCapability: exampleRWO,
	}); err != nil {
		log.Fatal(err)
	}
	_, err = cc.ControllerPublishVolume(rpcCtx, &csi.ControllerPublishVolumeRequest{
		VolumeId: vol.Volume.VolumeId, NodeId: "node-2", VolumeCapability: exampleRWO,
	})
	fmt.Println("publish to unknown node-2:", rdscsi.Code(err))

	// What a scrape sees: the gauge read from the manager, the RDS
	// commands the client reported, the RPCs the interceptor counted.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	fmt.Println("volume size:", vol.Volume.CapacityBytes)
	fmt.Println("nvme connections active:", exampleGauge(rm, "rds_csi.nvme.connections.active"))
	fmt.Println("rds commands recorded:", exampleCount(rm, "rds_csi.rds.command.duration") > 0)
	fmt.Println("csi operations counted:", exampleSum(rm, "rds_csi.volume.operations"))
	// Output:
	// publish to unknown node-2: NotFound
	// volume size: 1073741824
	// nvme connections active: 1
	// rds commands recorded: true
	// csi operations counted: 3
}

var exampleRWO = &csi.VolumeCapability{
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}

// exampleData returns the data of the metric called name, or nil.
func exampleData(rm metricdata.ResourceMetrics, name string) metricdata.Aggregation {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m.Data
			}
		}
	}
	return nil
}

// exampleGauge returns the value of an int64 gauge with one data point,
// or -1.
func exampleGauge(rm metricdata.ResourceMetrics, name string) int64 {
	if g, ok := exampleData(rm, name).(metricdata.Gauge[int64]); ok && len(g.DataPoints) == 1 {
		return g.DataPoints[0].Value
	}
	return -1
}

// exampleSum adds the data points of an int64 counter.
func exampleSum(rm metricdata.ResourceMetrics, name string) int64 {
	var n int64
	if s, ok := exampleData(rm, name).(metricdata.Sum[int64]); ok {
		for _, dp := range s.DataPoints {
			n += dp.Value
		}
	}
	return n
}

// exampleCount adds the counts of a histogram's data points.
func exampleCount(rm metricdata.ResourceMetrics, name string) uint64 {
	var n uint64
	if h, ok := exampleData(rm, name).(metricdata.Histogram[float64]); ok {
		for _, dp := range h.DataPoints {
			n += dp.Count
		}
	}
	return n
}
