package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel"
	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/metrics"
	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdscsi"
)

// Every flag falls back to an environment variable named after it.
func Example_environment() {
	for _, f := range []string{"endpoint", "node-id", "rds-key-file", "metrics-address"} {
		fmt.Printf("--%s\t%s\n", f, envName(f))
	}
	// Output:
	// --endpoint	RDS_CSI_ENDPOINT
	// --node-id	RDS_CSI_NODE_ID
	// --rds-key-file	RDS_CSI_RDS_KEY_FILE
	// --metrics-address	RDS_CSI_METRICS_ADDRESS
}

// Example_embed is the wiring examples/README.md shows for a driver of your
// own, kept here so that it compiles. It needs a real RDS, so it is not run.
func Example_embed() {
	ctx := context.Background()
	logger := slog.Default()
	meterProvider := otel.GetMeterProvider()
	keyPEM, _ := os.ReadFile("/etc/my-driver/id_ed25519")
	hostKeyLine := "ssh-ed25519 AAAA... rds"
	nodeExists := func(ctx context.Context, nodeID string) (bool, error) { return nodeID == "node-1", nil }

	// The RDS: key authentication and a pinned host key.
	signer, _ := ssh.ParsePrivateKey(keyPEM)
	hostKey, _ := rdsclient.HostKeyFromLine(hostKeyLine)
	client, _ := rdsclient.Dial(ctx, "10.0.0.5", &rdsclient.Config{
		User:            "csi",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKey,
	})
	defer client.Close()

	// Durable attachments; the gauges read them at collection time.
	store, _ := attach.NewFileStore("/var/lib/my-driver/attachments.json")
	defer store.Close()
	manager, _ := attach.NewManager(ctx, store)
	defer manager.Close()
	rec, _ := metrics.NewOTel(meterProvider, manager)
	defer rec.Close()

	ctrl, _ := rdscsi.NewControllerServer(client, manager,
		rdscsi.WithRecorder(rec),
		rdscsi.WithVolumePath("/storage-pool/k8s"),
		rdscsi.WithNVMeAddress("10.0.0.5"),
		rdscsi.WithNodeLookup(nodeExists))

	// Logging (secrets stripped) -> metrics -> per-volume serialization.
	serialize, _ := rdscsi.SerializeInterceptor()
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(
		rdscsi.LoggingInterceptor(logger),
		rdscsi.MetricsInterceptor(rec),
		serialize))
	rdscsi.NewIdentityServer("my.csi.example.com", "v1.0.0", rdscsi.WithController(ctrl)).Register(srv)
	ctrl.Register(srv)

	lis, _ := rdscsi.Listen("unix:///csi/csi.sock")
	go srv.Serve(lis)
}
