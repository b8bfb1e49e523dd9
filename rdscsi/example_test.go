package rdscsi_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
	"github.com/srvlab/rds-csi/rdscsi"
)

// A controller on a fake RDS: create a volume, publish it to a node and
// snapshot it. In a plugin the calls come from the CO over gRPC; here they
// are made directly.
func ExampleNewControllerServer() {
	ctx := context.Background()
	rds, err := rdstest.NewServer()
	if err != nil {
		log.Fatal(err)
	}
	defer rds.Close()
	client, err := rdsclient.Dial(ctx, rds.Addr(), rds.ClientConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	manager, err := attach.NewManager(ctx, attach.NewMemStore())
	if err != nil {
		log.Fatal(err)
	}
	defer manager.Close()

	ctrl, err := rdscsi.NewControllerServer(client, manager,
		rdscsi.WithVolumePath("/storage-pool/k8s"),
		rdscsi.WithNVMeAddress("10.0.0.5"))
	if err != nil {
		log.Fatal(err)
	}

	rwo := &csi.VolumeCapability{
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "xfs"}},
	}
	vol, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name:               "pvc-3f1c2a9e-8d47-4b6e-9a51-0c2d7e6f4b13",
		VolumeCapabilities: []*csi.VolumeCapability{rwo},
		CapacityRange:      &csi.CapacityRange{RequiredBytes: 1500 << 20},
		Parameters:         map[string]string{"csi.storage.k8s.io/pvc/name": "data"},
	})
	if err != nil {
		log.Fatal(err)
	}
	v := vol.Volume
	fmt.Println("volume:", v.VolumeId, v.CapacityBytes>>20, "MiB")
	fmt.Println("nqn:", v.VolumeContext["nqn"])

	pub, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
		VolumeId: v.VolumeId, NodeId: "worker-1", VolumeCapability: rwo, VolumeContext: v.VolumeContext})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("connect to:", pub.PublishContext["nvmeAddress"]+":"+pub.PublishContext["nvmePort"])

	_, err = ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
		VolumeId: v.VolumeId, NodeId: "worker-2", VolumeCapability: rwo, VolumeContext: v.VolumeContext})
	fmt.Println("second node:", rdscsi.Code(err))

	snap, err := ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "nightly", SourceVolumeId: v.VolumeId})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("snapshot of", snap.Snapshot.SourceVolumeId, "ready:", snap.Snapshot.ReadyToUse)
	// Output:
	// volume: pvc-3f1c2a9e-8d47-4b6e-9a51-0c2d7e6f4b13 1500 MiB
	// nqn: nqn.2000-02.com.mikrotik:pvc-3f1c2a9e-8d47-4b6e-9a51-0c2d7e6f4b13
	// connect to: 10.0.0.5:4420
	// second node: FailedPrecondition
	// snapshot of pvc-3f1c2a9e-8d47-4b6e-9a51-0c2d7e6f4b13 ready: true
}

func ExampleNewIdentityServer() {
	id, err := rdscsi.NewIdentityServer(rdscsi.DefaultDriverName, "v1.0.0",
		rdscsi.WithControllerService(true), rdscsi.WithOnlineExpansion(true))
	if err != nil {
		log.Fatal(err)
	}
	info, _ := id.GetPluginInfo(context.Background(), &csi.GetPluginInfoRequest{})
	fmt.Println(info.Name, info.VendorVersion)
	caps, _ := id.GetPluginCapabilities(context.Background(), &csi.GetPluginCapabilitiesRequest{})
	for _, c := range caps.Capabilities {
		if s := c.GetService(); s != nil {
			fmt.Println("service:", s.Type)
		}
		if e := c.GetVolumeExpansion(); e != nil {
			fmt.Println("expansion:", e.Type)
		}
	}
	// Output:
	// rds.csi.srvlab.io v1.0.0
	// service: CONTROLLER_SERVICE
	// expansion: ONLINE
}

// The driver name must be what the CSI spec allows; a wrong one fails at
// construction, not at the CO's first GetPluginInfo.
func ExampleNewIdentityServer_invalidName() {
	_, err := rdscsi.NewIdentityServer("rds_csi", "v1.0.0")
	fmt.Println(rdscsi.Code(err))
	// Output: InvalidArgument
}

func ExampleVolumeIDForName() {
	// Names a CO generates for PVCs are used as they are; anything else
	// maps to a stable ID of the same shape.
	fmt.Println(rdscsi.VolumeIDForName("pvc-3f1c2a9e-8d47-4b6e-9a51-0c2d7e6f4b13"))
	id := rdscsi.VolumeIDForName("my volume")
	fmt.Println(rdscsi.IsVolumeID(id), id == rdscsi.VolumeIDForName("my volume"))
	// Output:
	// pvc-3f1c2a9e-8d47-4b6e-9a51-0c2d7e6f4b13
	// true true
}

// Requests are logged only after every field the CSI spec marks as a
// secret has been stripped; the keys of secret maps stay visible.
func ExampleLoggingInterceptor() {
	var buf strings.Builder
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	intercept := rdscsi.LoggingInterceptor(logger)

	req := &csi.NodeStageVolumeRequest{
		VolumeId: "pvc-3f1c2a9e-8d47-4b6e-9a51-0c2d7e6f4b13",
		Secrets:  map[string]string{"password": "hunter2"},
	}
	info := &grpc.UnaryServerInfo{FullMethod: "/csi.v1.Node/NodeStageVolume"}
	_, _ = intercept(context.Background(), req, info, func(context.Context, any) (any, error) {
		return &csi.NodeStageVolumeResponse{}, nil
	})
	// protojson varies its spacing on purpose, so look for the parts.
	out := buf.String()
	fmt.Println("secret shown:", strings.Contains(out, "hunter2"))
	fmt.Println("key kept:", strings.Contains(out, "password"))
	fmt.Println("volume shown:", strings.Contains(out, req.VolumeId))
	// Output:
	// secret shown: false
	// key kept: true
	// volume shown: true
}

// Code shows the gRPC code a CO sees for an error class.
func ExampleCode() {
	fmt.Println(rdscsi.Code(fmt.Errorf("creating disk: %w", rdsclient.ErrNoSpace)))
	fmt.Println(rdscsi.Code(fmt.Errorf("publish: %w", attach.ErrMigrationLimit)))
	fmt.Println(rdscsi.Code(rdscsi.ErrAborted))
	// Output:
	// ResourceExhausted
	// FailedPrecondition
	// Aborted
}
