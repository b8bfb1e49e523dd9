package rdscsi_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/rdscsi"
)

// TestMaxVolumesPerNode: a node at its limit refuses new volumes with
// ResourceExhausted, retries of what it has still succeed, other nodes
// are unaffected, and an unpublish frees a slot.
func TestMaxVolumesPerNode(t *testing.T) {
	ctx := context.Background()
	e := newCtrlTestEnv(t, ctrlTestConfig{ctrlOpts: []rdscsi.ControllerOption{rdscsi.WithMaxVolumesPerNode(2)}})
	var vols []*csi.Volume
	for i := range 3 {
		vols = append(vols, ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq(fmt.Sprintf("limit-%d", i), 0)))(t).GetVolume())
	}
	publish := func(v *csi.Volume, node string) error {
		_, err := e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
			VolumeId: v.VolumeId, NodeId: node, VolumeCapability: ctrlTestRWO, VolumeContext: v.VolumeContext})
		return err
	}
	for _, v := range vols[:2] {
		if err := publish(v, "a"); err != nil {
			t.Fatal(err)
		}
	}
	ctrlTestCode(t, publish(vols[2], "a"), codes.ResourceExhausted)
	if err := publish(vols[0], "a"); err != nil {
		t.Errorf("retry at the limit: %v", err)
	}
	if err := publish(vols[2], "b"); err != nil {
		t.Errorf("other node: %v", err)
	}
	ctrlTestMust(e.cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: vols[2].VolumeId, NodeId: "b"}))(t)
	ctrlTestMust(e.cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: vols[0].VolumeId, NodeId: "a"}))(t)
	if err := publish(vols[2], "a"); err != nil {
		t.Errorf("after an unpublish: %v", err)
	}
	if n := len(e.manager.ListByNode("a")); n != 2 {
		t.Errorf("node a has %d volumes, want 2", n)
	}
}

// TestMaxVolumesPerNodeConcurrent: concurrent publishes of different
// volumes to one node never overshoot the limit.
func TestMaxVolumesPerNodeConcurrent(t *testing.T) {
	ctx := context.Background()
	const limit, n = 3, 12
	e := newCtrlTestEnv(t, ctrlTestConfig{ctrlOpts: []rdscsi.ControllerOption{rdscsi.WithMaxVolumesPerNode(limit)}})
	var vols []*csi.Volume
	for i := range n {
		vols = append(vols, ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq(fmt.Sprintf("race-%d", i), 0)))(t).GetVolume())
	}
	var wg sync.WaitGroup
	codesSeen := make([]codes.Code, n)
	for i, v := range vols {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
				VolumeId: v.VolumeId, NodeId: "a", VolumeCapability: ctrlTestRWO, VolumeContext: v.VolumeContext})
			codesSeen[i] = status.Code(err)
		}()
	}
	wg.Wait()
	ok := 0
	for _, c := range codesSeen {
		switch c {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
		default:
			t.Errorf("code %v", c)
		}
	}
	if got := len(e.manager.ListByNode("a")); ok != limit || got != limit {
		t.Errorf("%d publishes succeeded, %d attached; limit %d", ok, got, limit)
	}
}

// attachmentsOnly hides every method but those of rdscsi.Attachments.
type attachmentsOnly struct{ rdscsi.Attachments }

func TestMaxVolumesPerNodeNeedsNodeAttachments(t *testing.T) {
	m, err := attach.NewManager(context.Background(), attach.NewMemStore())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	e := newCtrlTestEnv(t, ctrlTestConfig{noAttach: true})
	if _, err := rdscsi.NewControllerServer(e.client, attachmentsOnly{m}, rdscsi.WithMaxVolumesPerNode(1)); rdscsi.Code(err) != codes.InvalidArgument {
		t.Errorf("limit without NodeAttachments: %v", err)
	}
	if _, err := rdscsi.NewControllerServer(e.client, m, rdscsi.WithMaxVolumesPerNode(-1)); rdscsi.Code(err) != codes.InvalidArgument {
		t.Errorf("negative limit: %v", err)
	}
	if _, err := rdscsi.NewControllerServer(e.client, m, rdscsi.WithMaxVolumesPerNode(1)); err != nil {
		t.Errorf("with attach.Manager: %v", err)
	}
}

// TestPublishReadonlyRefused: PUBLISH_READONLY is not advertised, so a
// readonly ControllerPublishVolume is refused, not silently published
// read-write, and nothing is attached.
func TestPublishReadonlyRefused(t *testing.T) {
	ctx := context.Background()
	e := newCtrlTestEnv(t, ctrlTestConfig{})
	caps := ctrlTestMust(e.cc.ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{}))(t)
	for _, c := range caps.GetCapabilities() {
		if c.GetRpc().GetType() == csi.ControllerServiceCapability_RPC_PUBLISH_READONLY {
			t.Fatal("PUBLISH_READONLY advertised")
		}
	}
	v := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("ro", 0)))(t).GetVolume()
	_, err := e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
		VolumeId: v.VolumeId, NodeId: "a", VolumeCapability: ctrlTestRWO, VolumeContext: v.VolumeContext, Readonly: true})
	ctrlTestCode(t, err, codes.InvalidArgument)
	if _, ok := e.manager.Get(v.VolumeId); ok {
		t.Error("volume attached by a refused publish")
	}
}
