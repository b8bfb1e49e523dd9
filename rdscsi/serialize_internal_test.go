package rdscsi

import (
	"context"
	"errors"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/internal/keylock"
)

// TestSerializeKeys holds each key an RPC should take and checks that the
// RPC is aborted, and that it runs once the key is free.
func TestSerializeKeys(t *testing.T) {
	locks := new(keylock.Set)
	intercept := serializeInterceptor(locks)
	call := func(method string, req any) error {
		_, err := intercept(context.Background(), req, &grpc.UnaryServerInfo{FullMethod: method},
			func(context.Context, any) (any, error) { return "ok", nil })
		return err
	}
	vol := VolumeIDForName("k")
	snap := SnapshotIDForName("s")
	for _, tc := range []struct {
		held   string
		method string
		req    any
		abort  bool
	}{
		{vol, "/csi.v1.Controller/CreateVolume", &csi.CreateVolumeRequest{Name: "k"}, true},
		{vol, "/csi.v1.Node/NodeStageVolume", &csi.NodeStageVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Node/NodeUnstageVolume", &csi.NodeUnstageVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Node/NodePublishVolume", &csi.NodePublishVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Node/NodeExpandVolume", &csi.NodeExpandVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Node/NodeGetVolumeStats", &csi.NodeGetVolumeStatsRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Node/NodeUnpublishVolume", &csi.NodeUnpublishVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Node/NodeGetVolumeHealth", &csi.NodeGetVolumeHealthRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Controller/DeleteVolume", &csi.DeleteVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Controller/ControllerPublishVolume", &csi.ControllerPublishVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Controller/ControllerUnpublishVolume", &csi.ControllerUnpublishVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Controller/ControllerExpandVolume", &csi.ControllerExpandVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Controller/ValidateVolumeCapabilities", &csi.ValidateVolumeCapabilitiesRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Controller/ControllerGetVolumeHealth", &csi.ControllerGetVolumeHealthRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Controller/CreateVolume", &csi.CreateVolumeRequest{Name: "clone", VolumeContentSource: &csi.VolumeContentSource{
			Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: vol}}}}, true},
		{snap, "/csi.v1.Controller/CreateVolume", &csi.CreateVolumeRequest{Name: "restore", VolumeContentSource: &csi.VolumeContentSource{
			Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap}}}}, true},
		{vol, "/csi.v1.Controller/ControllerGetVolume", &csi.ControllerGetVolumeRequest{VolumeId: vol}, true},
		{vol, "/csi.v1.Controller/CreateSnapshot", &csi.CreateSnapshotRequest{Name: "other", SourceVolumeId: vol}, true},
		{snap, "/csi.v1.Controller/CreateSnapshot", &csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: "pvc-other"}, true},
		{snap, "/csi.v1.Controller/DeleteSnapshot", &csi.DeleteSnapshotRequest{SnapshotId: snap}, true},
		{snap, "/csi.v1.Controller/GetSnapshot", &csi.GetSnapshotRequest{SnapshotId: snap}, true},
		{vol, "/csi.v1.Controller/ListVolumes", &csi.ListVolumesRequest{}, false},
		{vol, "/csi.v1.Controller/ListSnapshots", &csi.ListSnapshotsRequest{SourceVolumeId: vol}, false},
		{vol, "/csi.v1.Controller/CreateVolume", &csi.CreateVolumeRequest{Name: "other"}, false},
		{vol, "/csi.v1.Identity/Probe", &csi.ProbeRequest{}, false},
	} {
		unlock, ok := locks.TryLock(tc.held)
		if !ok {
			t.Fatal("lock busy")
		}
		err := call(tc.method, tc.req)
		if aborted := status.Code(err) == codes.Aborted; aborted != tc.abort {
			t.Errorf("%s %T with %s held: err %v, want aborted=%v", tc.method, tc.req, tc.held, err, tc.abort)
		}
		unlock()
		if err := call(tc.method, tc.req); err != nil {
			t.Errorf("%s after unlock: %v", tc.method, err)
		}
	}
	if locks.Len() != 0 {
		t.Errorf("%d locks left", locks.Len())
	}
	// The handler's own error passes through untouched.
	_, err := intercept(context.Background(), &csi.DeleteVolumeRequest{VolumeId: vol}, &grpc.UnaryServerInfo{FullMethod: "/x/DeleteVolume"},
		func(context.Context, any) (any, error) { return nil, errors.New("boom") })
	if err == nil || err.Error() != "boom" {
		t.Errorf("handler error: %v", err)
	}
}
