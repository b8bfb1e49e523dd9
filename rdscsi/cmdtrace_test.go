package rdscsi_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// commandShape reduces a console command to its shape: values (quoted
// strings, words after "=") are dropped, so that the shape names the
// menu, the verb and the properties used.
func commandShape(cmd string) string {
	cmd = regexp.MustCompile(`"(\\.|[^"\\])*"`).ReplaceAllString(cmd, "")
	cmd = regexp.MustCompile(`=[^\s\[\]"]*`).ReplaceAllString(cmd, "=")
	return cmd
}

// TestCommandsPerCall pins the console commands each CSI call sends to
// the device, as shapes, so that a change in how many round trips a call
// costs is a deliberate one (BENCHMARKS.md, "Commands per CSI call").
func TestCommandsPerCall(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{})
	ctx := context.Background()
	trace := func(call string, want []string, f func() error) {
		t.Helper()
		e.rds.ResetCommands()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", call, err)
		}
		var got []string
		for _, c := range e.rds.Commands() {
			got = append(got, commandShape(c))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s sends %d commands:\n\t%s\nwant %d:\n\t%s", call, len(got), strings.Join(got, "\n\t"), len(want), strings.Join(want, "\n\t"))
		}
	}
	const (
		diskBySlot = "/disk print detail where slot="
		diskAdd    = "/disk add type= file-path= file-size= slot= nvme-tcp-export= nvme-tcp-server-port= nvme-tcp-server-nqn="
		diskCopy   = "/disk add type= copy-from=[find slot=] file-path= file-size= slot= nvme-tcp-export= nvme-tcp-server-port= nvme-tcp-server-nqn="
	)
	var vol *csi.Volume
	trace("CreateVolume (new)", []string{diskAdd}, func() error {
		r, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq("cmds", 16<<20))
		vol = r.GetVolume()
		return err
	})
	trace("CreateVolume (repeat)", []string{diskAdd, diskBySlot}, func() error {
		_, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq("cmds", 16<<20))
		return err
	})
	trace("ControllerPublishVolume", []string{diskBySlot}, func() error {
		_, err := e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
			VolumeId: vol.VolumeId, NodeId: "n1", VolumeCapability: ctrlTestRWO, VolumeContext: vol.VolumeContext})
		return err
	})
	trace("ControllerUnpublishVolume", nil, func() error {
		_, err := e.cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: vol.VolumeId, NodeId: "n1"})
		return err
	})
	trace("ControllerExpandVolume", []string{diskBySlot, "/disk set [find slot=] file-size=", diskBySlot}, func() error {
		_, err := e.cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{
			VolumeId: vol.VolumeId, CapacityRange: &csi.CapacityRange{RequiredBytes: 32 << 20}, VolumeCapability: ctrlTestRWO})
		return err
	})
	trace("ControllerExpandVolume (already that size)", []string{diskBySlot}, func() error {
		_, err := e.cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{
			VolumeId: vol.VolumeId, CapacityRange: &csi.CapacityRange{RequiredBytes: 32 << 20}, VolumeCapability: ctrlTestRWO})
		return err
	})
	trace("GetCapacity", []string{"/disk print detail where mount-point="}, func() error {
		_, err := e.cc.GetCapacity(ctx, &csi.GetCapacityRequest{})
		return err
	})
	trace("ListVolumes (a page)", []string{"/disk print detail where slot~"}, func() error {
		_, err := e.cc.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 10})
		return err
	})
	var snap *csi.Snapshot
	trace("CreateSnapshot (new)", []string{diskBySlot, "/disk add type= copy-from=[find slot=] file-path= slot=", diskBySlot}, func() error {
		r, err := e.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "cmds-snap", SourceVolumeId: vol.VolumeId})
		snap = r.GetSnapshot()
		return err
	})
	trace("CreateSnapshot (repeat)", []string{diskBySlot, "/disk add type= copy-from=[find slot=] file-path= slot=", diskBySlot}, func() error {
		_, err := e.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "cmds-snap", SourceVolumeId: vol.VolumeId})
		return err
	})
	restore := ctrlTestCreateReq("cmds-restored", 32<<20)
	restore.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.GetSnapshotId()}}}
	trace("CreateVolume (from a snapshot, new)", []string{diskBySlot, diskCopy}, func() error {
		_, err := e.cc.CreateVolume(ctx, restore)
		return err
	})
	trace("CreateVolume (from a snapshot, repeat)", []string{diskBySlot, diskCopy, diskBySlot}, func() error {
		_, err := e.cc.CreateVolume(ctx, restore)
		return err
	})
	trace("DeleteSnapshot (present)", []string{diskBySlot, "/disk remove [find slot=]", diskBySlot, "/file remove [find name=]"}, func() error {
		_, err := e.cc.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap.GetSnapshotId()})
		return err
	})
	trace("CreateVolume (from a snapshot since deleted, repeat)", []string{diskBySlot, diskBySlot}, func() error {
		_, err := e.cc.CreateVolume(ctx, restore)
		return err
	})
	trace("DeleteVolume (present)", []string{diskBySlot, "/disk remove [find slot=]", diskBySlot, "/file remove [find name=]"}, func() error {
		_, err := e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vol.VolumeId})
		return err
	})
	trace("DeleteVolume (absent)", []string{diskBySlot, "/file print detail where name~"}, func() error {
		_, err := e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vol.VolumeId})
		return err
	})
}
