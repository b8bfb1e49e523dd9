package rdscsi_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
	"github.com/srvlab/rds-csi/rdscsi"
)

const (
	ctrlTestMiB = int64(1 << 20)
	ctrlTestGiB = int64(1 << 30)
)

func ctrlTestCode(t testing.TB, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code %v, want %v (err: %v)", got, want, err)
	}
}

// ctrlTestMust fails the test on err: ctrlTestMust(f())(t).
func ctrlTestMust[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestControllerCapabilities(t *testing.T) {
	has := func(resp *csi.ControllerGetCapabilitiesResponse, c csi.ControllerServiceCapability_RPC_Type) bool {
		for _, x := range resp.GetCapabilities() {
			if x.GetRpc().GetType() == c {
				return true
			}
		}
		return false
	}
	always := []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csi.ControllerServiceCapability_RPC_GET_CAPACITY,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_GET_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_GET_VOLUME,
		csi.ControllerServiceCapability_RPC_GET_VOLUME_HEALTH,
		csi.ControllerServiceCapability_RPC_LIST_VOLUME_HEALTH,
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	}
	attachOnly := []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES_PUBLISHED_NODES,
	}
	never := []csi.ControllerServiceCapability_RPC_Type{
		// The attachment store does not record the readonly flag.
		csi.ControllerServiceCapability_RPC_PUBLISH_READONLY,
		csi.ControllerServiceCapability_RPC_MODIFY_VOLUME,
	}
	ctx := context.Background()
	for _, withAttach := range []bool{true, false} {
		e := newCtrlTestEnv(t, ctrlTestConfig{noAttach: !withAttach})
		resp := ctrlTestMust(e.cc.ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{}))(t)
		for _, c := range always {
			if !has(resp, c) {
				t.Errorf("attach=%v: %v missing", withAttach, c)
			}
		}
		for _, c := range attachOnly {
			if has(resp, c) != withAttach {
				t.Errorf("attach=%v: %v advertised=%v", withAttach, c, has(resp, c))
			}
		}
		for _, c := range never {
			if has(resp, c) {
				t.Errorf("%v advertised", c)
			}
		}
		if !withAttach {
			vol := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("no-attach", 0)))(t).GetVolume()
			_, err := e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
				VolumeId: vol.VolumeId, NodeId: "n1", VolumeCapability: ctrlTestRWO, VolumeContext: vol.VolumeContext})
			ctrlTestCode(t, err, codes.Unimplemented)
			_, err = e.cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: vol.VolumeId, NodeId: "n1"})
			ctrlTestCode(t, err, codes.Unimplemented)
		}
	}
}

func TestNewControllerServerValidatesOptions(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{})
	for name, opt := range map[string]rdscsi.ControllerOption{
		"relative path":    rdscsi.WithVolumePath("storage-pool/k8s"),
		"pool root":        rdscsi.WithVolumePath("/storage-pool"),
		"dot dot":          rdscsi.WithVolumePath("/storage-pool/../etc"),
		"quote in path":    rdscsi.WithVolumePath(`/storage-pool/k"8s`),
		"bad address":      rdscsi.WithNVMeAddress("10.0.0.1; reboot"),
		"port":             rdscsi.WithNVMePort(70000),
		"size":             rdscsi.WithDefaultVolumeSize(-1),
		"nil node lookup":  rdscsi.WithNodeLookup(nil),
		"zero volume size": rdscsi.WithDefaultVolumeSize(0),
		"nil clock":        rdscsi.WithClock(nil),
		"negative limit":   rdscsi.WithMaxVolumesPerNode(-1),
		"topology value":   rdscsi.WithTopology(map[string]string{"zone": "-a"}),
		"topology key":     rdscsi.WithTopology(map[string]string{"Example.com/zone": "a"}),
	} {
		if _, err := rdscsi.NewControllerServer(e.client, e.manager, opt); !errors.Is(err, rdscsi.ErrInvalidArgument) {
			t.Errorf("%s: err %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := rdscsi.NewControllerServer(nil, nil); !errors.Is(err, rdscsi.ErrInvalidArgument) {
		t.Errorf("nil disks: %v", err)
	}
}

func TestCreateVolume(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{})
	ctx := context.Background()

	t.Run("default size and volume context", func(t *testing.T) {
		v := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("default-size", 0)))(t).GetVolume()
		if v.CapacityBytes != rdscsi.DefaultVolumeSize {
			t.Errorf("capacity %d, want %d", v.CapacityBytes, rdscsi.DefaultVolumeSize)
		}
		if !rdscsi.IsVolumeID(v.VolumeId) || v.VolumeId != rdscsi.VolumeIDForName("default-size") {
			t.Errorf("volume ID %q", v.VolumeId)
		}
		want := map[string]string{
			"nqn":         rdscsi.NQN(v.VolumeId),
			"nvmeAddress": ctrlTestAddress,
			"nvmePort":    "4420",
			"volumePath":  ctrlTestVolumePath,
		}
		if !ctrlTestMapsEqual(v.VolumeContext, want) {
			t.Errorf("volume context %v, want %v", v.VolumeContext, want)
		}
		d := ctrlTestMust(e.client.Disk(ctx, v.VolumeId))(t)
		if d.FilePath != ctrlTestVolumePath+"/"+v.VolumeId+".img" || d.Export == nil || d.Export.NQN != rdscsi.NQN(v.VolumeId) || d.Export.Port != 4420 {
			t.Errorf("disk on the RDS: %+v", d)
		}
	})

	t.Run("size rounded up and retries compare the rounded size", func(t *testing.T) {
		req := ctrlTestCreateReq("rounding", 3*ctrlTestGiB/2+1)
		v1 := ctrlTestMust(e.cc.CreateVolume(ctx, req))(t).GetVolume()
		want := rdsclient.RoundUpSize(3*ctrlTestGiB/2 + 1)
		if v1.CapacityBytes != want {
			t.Fatalf("capacity %d, want %d", v1.CapacityBytes, want)
		}
		for i := 0; i < 3; i++ {
			v2 := ctrlTestMust(e.cc.CreateVolume(ctx, req))(t).GetVolume()
			if v2.VolumeId != v1.VolumeId || v2.CapacityBytes != v1.CapacityBytes {
				t.Fatalf("retry %d: %v, want %v", i, v2, v1)
			}
		}
		// The same name with a larger size is another volume.
		_, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq("rounding", 2*ctrlTestGiB))
		ctrlTestCode(t, err, codes.AlreadyExists)
		// A limit below the existing size is incompatible too.
		req2 := ctrlTestCreateReq("rounding", ctrlTestGiB)
		req2.CapacityRange.LimitBytes = ctrlTestGiB
		_, err = e.cc.CreateVolume(ctx, req2)
		ctrlTestCode(t, err, codes.AlreadyExists)
	})

	t.Run("limit below the rounded size", func(t *testing.T) {
		req := ctrlTestCreateReq("limit", 1000)
		req.CapacityRange.LimitBytes = 2000
		_, err := e.cc.CreateVolume(ctx, req)
		ctrlTestCode(t, err, codes.OutOfRange)
		// Only a limit: the default is clipped to it.
		req = ctrlTestCreateReq("limit-only", 0)
		req.CapacityRange = &csi.CapacityRange{LimitBytes: 100*ctrlTestMiB + 5}
		v := ctrlTestMust(e.cc.CreateVolume(ctx, req))(t).GetVolume()
		if v.CapacityBytes != 100*ctrlTestMiB {
			t.Errorf("capacity %d, want 100 MiB", v.CapacityBytes)
		}
	})

	t.Run("name already a volume ID is used as is", func(t *testing.T) {
		name := "pvc-0d6a3b0c-2b9e-4b59-9c3a-6d1f3e9f0a11"
		v := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq(name, 0)))(t).GetVolume()
		if v.VolumeId != name {
			t.Errorf("volume ID %q, want %q", v.VolumeId, name)
		}
	})

	t.Run("hostile name never reaches the console", func(t *testing.T) {
		e.rds.ResetCommands()
		name := `x"] ; /system reset-configuration [find`
		v := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq(name, 0)))(t).GetVolume()
		if !rdscsi.IsVolumeID(v.VolumeId) {
			t.Fatalf("volume ID %q", v.VolumeId)
		}
		for _, c := range e.rds.Commands() {
			if strings.Contains(c, "reset") || strings.Contains(c, `x"`) {
				t.Errorf("console saw %q", c)
			}
		}
	})

	t.Run("parameters", func(t *testing.T) {
		req := ctrlTestCreateReq("params", 0)
		req.Parameters = map[string]string{
			"volumePath":                       "/storage-pool/other",
			"nvmeAddress":                      "rds.example.net",
			"nvmePort":                         "4421",
			"ctrlLossTmo":                      "-1",
			"reconnectDelay":                   "5",
			"keepAliveTmo":                     "10",
			"migrationTimeoutSeconds":          "120",
			"csi.storage.k8s.io/pvc/name":      "data",
			"csi.storage.k8s.io/pvc/namespace": "default",
		}
		v := ctrlTestMust(e.cc.CreateVolume(ctx, req))(t).GetVolume()
		want := map[string]string{
			"nqn":                     rdscsi.NQN(v.VolumeId),
			"nvmeAddress":             "rds.example.net",
			"nvmePort":                "4421",
			"volumePath":              "/storage-pool/other",
			"ctrlLossTmo":             "-1",
			"reconnectDelay":          "5",
			"keepAliveTmo":            "10",
			"migrationTimeoutSeconds": "120",
		}
		if !ctrlTestMapsEqual(v.VolumeContext, want) {
			t.Errorf("volume context %v, want %v", v.VolumeContext, want)
		}
		d := ctrlTestMust(e.client.Disk(ctx, v.VolumeId))(t)
		if !strings.HasPrefix(d.FilePath, "/storage-pool/other/") || d.Export.Port != 4421 {
			t.Errorf("disk %+v", d)
		}
		// Same name in another directory: incompatible.
		req.Parameters["volumePath"] = "/storage-pool/k8s"
		_, err := e.cc.CreateVolume(ctx, req)
		ctrlTestCode(t, err, codes.AlreadyExists)
	})

	t.Run("invalid requests", func(t *testing.T) {
		e.rds.ResetCommands()
		for name, req := range map[string]*csi.CreateVolumeRequest{
			"no name":            {VolumeCapabilities: []*csi.VolumeCapability{ctrlTestRWO}},
			"no capabilities":    {Name: "x"},
			"unknown parameter":  {Name: "x", VolumeCapabilities: []*csi.VolumeCapability{ctrlTestRWO}, Parameters: map[string]string{"fsType": "ext4"}},
			"bad port":           {Name: "x", VolumeCapabilities: []*csi.VolumeCapability{ctrlTestRWO}, Parameters: map[string]string{"nvmePort": "0"}},
			"bad tunable":        {Name: "x", VolumeCapabilities: []*csi.VolumeCapability{ctrlTestRWO}, Parameters: map[string]string{"reconnectDelay": "soon"}},
			"hostile path":       {Name: "x", VolumeCapabilities: []*csi.VolumeCapability{ctrlTestRWO}, Parameters: map[string]string{"volumePath": "/storage-pool/$(reboot)"}},
			"rwx mount":          ctrlTestCreateReq("x", 0, ctrlTestMountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "")),
			"rox":                ctrlTestCreateReq("x", 0, ctrlTestBlockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY)),
			"btrfs":              ctrlTestCreateReq("x", 0, ctrlTestMountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "btrfs")),
			"no access type":     ctrlTestCreateReq("x", 0, &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}),
			"no access mode":     ctrlTestCreateReq("x", 0, &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}}),
			"negative capacity":  {Name: "x", VolumeCapabilities: []*csi.VolumeCapability{ctrlTestRWO}, CapacityRange: &csi.CapacityRange{RequiredBytes: -1}},
			"required > limit":   {Name: "x", VolumeCapabilities: []*csi.VolumeCapability{ctrlTestRWO}, CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * ctrlTestGiB, LimitBytes: ctrlTestGiB}},
			"empty snapshot src": {Name: "x", VolumeCapabilities: []*csi.VolumeCapability{ctrlTestRWO}, VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{}}}},
		} {
			_, err := e.cc.CreateVolume(ctx, req)
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s: %v, want InvalidArgument", name, err)
			}
		}
		if c := e.rds.Commands(); len(c) != 0 {
			t.Errorf("invalid requests reached the RDS: %q", c)
		}
	})

	t.Run("supported capabilities", func(t *testing.T) {
		for i, vc := range []*csi.VolumeCapability{
			ctrlTestMountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "xfs"),
			ctrlTestMountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, ""),
			ctrlTestMountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER, "ext4"),
			ctrlTestMountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER, "ext4"),
			ctrlTestBlockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER),
			ctrlTestBlockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER),
		} {
			if _, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq("caps-"+string(rune('a'+i)), 0, vc)); err != nil {
				t.Errorf("%v: %v", vc, err)
			}
		}
	})
}

func TestCreateVolumePoolFull(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{rdsOpts: []rdstest.Option{rdstest.WithPool("storage-pool", 64*ctrlTestMiB)}})
	_, err := e.cc.CreateVolume(context.Background(), ctrlTestCreateReq("big", ctrlTestGiB))
	ctrlTestCode(t, err, codes.ResourceExhausted)
	if s := e.diskSlots(t, "pvc-"); len(s) != 0 {
		t.Errorf("disks left: %v", s)
	}
}

func TestCreateVolumeFromSources(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{})
	ctx := context.Background()
	src := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("source", 2*ctrlTestGiB)))(t).GetVolume()
	snap := ctrlTestMust(e.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: src.VolumeId}))(t).GetSnapshot()

	snapSource := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.SnapshotId}}}
	volSource := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: src.VolumeId}}}

	t.Run("restore keeps the source size without a capacity", func(t *testing.T) {
		req := ctrlTestCreateReq("restored", 0)
		req.VolumeContentSource = snapSource
		v := ctrlTestMust(e.cc.CreateVolume(ctx, req))(t).GetVolume()
		if v.CapacityBytes != 2*ctrlTestGiB || v.GetContentSource().GetSnapshot().GetSnapshotId() != snap.SnapshotId {
			t.Fatalf("restored volume %v", v)
		}
		d := ctrlTestMust(e.client.Disk(ctx, v.VolumeId))(t)
		if d.Export == nil || !strings.Contains(d.FilePath, ".from-"+snap.SnapshotId) {
			t.Errorf("restored disk %+v", d)
		}
		// Idempotent, and the content source is read back from the device.
		v2 := ctrlTestMust(e.cc.CreateVolume(ctx, req))(t).GetVolume()
		if v2.VolumeId != v.VolumeId || v2.GetContentSource().GetSnapshot().GetSnapshotId() != snap.SnapshotId {
			t.Errorf("retry %v", v2)
		}
		// The same name without the source is another volume.
		_, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq("restored", 0))
		ctrlTestCode(t, err, codes.AlreadyExists)
	})

	t.Run("restore larger", func(t *testing.T) {
		req := ctrlTestCreateReq("restored-big", 3*ctrlTestGiB)
		req.VolumeContentSource = snapSource
		v := ctrlTestMust(e.cc.CreateVolume(ctx, req))(t).GetVolume()
		if v.CapacityBytes != 3*ctrlTestGiB {
			t.Errorf("capacity %d", v.CapacityBytes)
		}
	})

	t.Run("restore smaller than the snapshot", func(t *testing.T) {
		req := ctrlTestCreateReq("restored-small", ctrlTestGiB)
		req.VolumeContentSource = snapSource
		_, err := e.cc.CreateVolume(ctx, req)
		ctrlTestCode(t, err, codes.OutOfRange)
	})

	t.Run("clone", func(t *testing.T) {
		req := ctrlTestCreateReq("clone", 0)
		req.VolumeContentSource = volSource
		v := ctrlTestMust(e.cc.CreateVolume(ctx, req))(t).GetVolume()
		if v.GetContentSource().GetVolume().GetVolumeId() != src.VolumeId || v.CapacityBytes != 2*ctrlTestGiB {
			t.Errorf("clone %v", v)
		}
	})

	t.Run("retry after the source is gone", func(t *testing.T) {
		src2 := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("short-lived", 0)))(t).GetVolume()
		req := ctrlTestCreateReq("clone-of-short-lived", 0)
		req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: src2.VolumeId}}}
		v := ctrlTestMust(e.cc.CreateVolume(ctx, req))(t).GetVolume()
		ctrlTestMust(e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: src2.VolumeId}))(t)
		again := ctrlTestMust(e.cc.CreateVolume(ctx, req))(t).GetVolume()
		if again.VolumeId != v.VolumeId || again.GetContentSource().GetVolume().GetVolumeId() != src2.VolumeId {
			t.Errorf("retry: %v", again)
		}
	})

	t.Run("missing sources", func(t *testing.T) {
		for name, cs := range map[string]*csi.VolumeContentSource{
			"snapshot":           {Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: rdscsi.SnapshotIDForName("nope")}}},
			"malformed snapshot": {Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "non-existing-snapshot-id"}}},
			"volume":             {Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: rdscsi.VolumeIDForName("nope")}}},
			"malformed volume":   {Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "fake-vol-id-1"}}},
			"volume as snapshot": {Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: src.VolumeId}}},
		} {
			req := ctrlTestCreateReq("from-missing-"+strings.ReplaceAll(name, " ", "-"), 0)
			req.VolumeContentSource = cs
			_, err := e.cc.CreateVolume(ctx, req)
			if status.Code(err) != codes.NotFound {
				t.Errorf("%s: %v, want NotFound", name, err)
			}
		}
	})
}

func TestDeleteVolume(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{})
	ctx := context.Background()

	v := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("del", 0)))(t).GetVolume()
	snap := ctrlTestMust(e.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "del-snap", SourceVolumeId: v.VolumeId}))(t).GetSnapshot()

	t.Run("published volume is refused", func(t *testing.T) {
		ctrlTestMust(e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
			VolumeId: v.VolumeId, NodeId: "node-a", VolumeCapability: ctrlTestRWO, VolumeContext: v.VolumeContext}))(t)
		_, err := e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.VolumeId})
		ctrlTestCode(t, err, codes.FailedPrecondition)
		ctrlTestMust(e.cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v.VolumeId, NodeId: "node-a"}))(t)
	})

	t.Run("volume a host still has connected is refused", func(t *testing.T) {
		// Not published through the controller, but an initiator is still
		// connected (a node that failed to disconnect): RDS refuses to
		// remove the disk, and nothing is lost.
		c := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("del-connected", 0)))(t).GetVolume()
		nqn := rdscsi.NQN(c.VolumeId)
		if err := e.rds.ConnectInitiator(nqn); err != nil {
			t.Fatal(err)
		}
		_, err := e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: c.VolumeId})
		ctrlTestCode(t, err, codes.FailedPrecondition)
		if _, err := e.client.Disk(ctx, c.VolumeId); err != nil {
			t.Fatalf("disk of a connected volume: %v", err)
		}
		if !slices.Contains(e.fileNames(t, "storage-pool/k8s"), "storage-pool/k8s/"+c.VolumeId+".img") {
			t.Fatalf("backing file of a connected volume gone: %v", e.fileNames(t, "storage-pool/k8s"))
		}
		e.rds.DisconnectInitiator(nqn)
		ctrlTestMust(e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: c.VolumeId}))(t)
		if _, err := e.client.Disk(ctx, c.VolumeId); !errors.Is(err, rdsclient.ErrNotFound) {
			t.Errorf("disk after disconnect and delete: %v", err)
		}
	})

	t.Run("delete with a snapshot, twice", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			ctrlTestMust(e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.VolumeId}))(t)
		}
		if _, err := e.client.Disk(ctx, v.VolumeId); !errors.Is(err, rdsclient.ErrNotFound) {
			t.Errorf("disk still there: %v", err)
		}
		// The snapshot is an independent copy and still restores.
		req := ctrlTestCreateReq("after-source-deleted", 0)
		req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.SnapshotId}}}
		r := ctrlTestMust(e.cc.CreateVolume(ctx, req))(t).GetVolume()
		ctrlTestMust(e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: r.VolumeId}))(t)
		ctrlTestMust(e.cc.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap.SnapshotId}))(t)
		if files := e.fileNames(t, "storage-pool/k8s"); len(files) != 0 {
			t.Errorf("files left: %v", files)
		}
	})

	t.Run("IDs that are not ours never reach the console", func(t *testing.T) {
		e.rds.ResetCommands()
		for _, id := range []string{"fake-vol-id", `pvc-x"]; /system reboot`, "PVC-0D6A3B0C-2B9E-4B59-9C3A-6D1F3E9F0A11", "snap-0d6a3b0c-2b9e-4b59-9c3a-6d1f3e9f0a11"} {
			ctrlTestMust(e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}))(t)
		}
		if c := e.rds.Commands(); len(c) != 0 {
			t.Errorf("commands sent: %q", c)
		}
		_, err := e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{})
		ctrlTestCode(t, err, codes.InvalidArgument)
	})

	t.Run("foreign disk with our ID shape is refused", func(t *testing.T) {
		id := "pvc-0d6a3b0c-2b9e-4b59-9c3a-6d1f3e9f0a99"
		e.rds.AddForeignDisk(rdstest.ForeignDisk{Slot: id, Type: "nvme", SizeBytes: ctrlTestGiB})
		_, err := e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
		ctrlTestCode(t, err, codes.FailedPrecondition)
		if _, err := e.client.Disk(ctx, id); err != nil {
			t.Errorf("foreign disk touched: %v", err)
		}
	})

	t.Run("backing file left by a failed removal is cleaned", func(t *testing.T) {
		v := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("orphan", 0)))(t).GetVolume()
		// Every file removal fails until the fault is lifted: the disk
		// goes, its file stays, and the RPC fails.
		remove := e.rds.Inject(rdstest.FailAlways(`^/file remove`, "failure: file is busy"))
		_, err := e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.VolumeId})
		if err == nil {
			t.Fatal("delete succeeded while file removal fails")
		}
		if _, err := e.client.Disk(ctx, v.VolumeId); !errors.Is(err, rdsclient.ErrNotFound) {
			t.Fatalf("disk: %v", err)
		}
		if !slices.Contains(e.fileNames(t, "storage-pool/k8s"), "storage-pool/k8s/"+v.VolumeId+".img") {
			t.Fatalf("file already gone: %v", e.fileNames(t, "storage-pool/k8s"))
		}
		remove()
		// The retry finds no disk, and removes the orphan file.
		ctrlTestMust(e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.VolumeId}))(t)
		if slices.Contains(e.fileNames(t, "storage-pool/k8s"), "storage-pool/k8s/"+v.VolumeId+".img") {
			t.Errorf("orphan file left: %v", e.fileNames(t, "storage-pool/k8s"))
		}
	})

	t.Run("one failed file removal is finished in the same call", func(t *testing.T) {
		v := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("orphan-once", 0)))(t).GetVolume()
		remove := e.rds.Inject(rdstest.FailNth(`^/file remove`, 1, "failure: file is busy"))
		defer remove()
		ctrlTestMust(e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.VolumeId}))(t)
		if slices.Contains(e.fileNames(t, "storage-pool/k8s"), "storage-pool/k8s/"+v.VolumeId+".img") {
			t.Errorf("file left: %v", e.fileNames(t, "storage-pool/k8s"))
		}
	})
}

func TestPublishUnpublish(t *testing.T) {
	known := map[string]bool{"node-a": true, "node-b": true}
	rec := &ctrlTestRecorder{}
	e := newCtrlTestEnv(t, ctrlTestConfig{ctrlOpts: []rdscsi.ControllerOption{
		rdscsi.WithRecorder(rec),
		rdscsi.WithNodeLookup(func(_ context.Context, id string) (bool, error) {
			if id == "node-flaky" {
				return false, errors.New("api server down")
			}
			return known[id], nil
		}),
	}})
	ctx := context.Background()
	req := ctrlTestCreateReq("pub", 0)
	req.Parameters = map[string]string{"ctrlLossTmo": "60"}
	v := ctrlTestMust(e.cc.CreateVolume(ctx, req))(t).GetVolume()
	pub := func(node string, vc *csi.VolumeCapability) (*csi.ControllerPublishVolumeResponse, error) {
		return e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
			VolumeId: v.VolumeId, NodeId: node, VolumeCapability: vc, VolumeContext: v.VolumeContext})
	}

	resp := ctrlTestMust(pub("node-a", ctrlTestRWO))(t)
	want := map[string]string{"nqn": rdscsi.NQN(v.VolumeId), "nvmeAddress": ctrlTestAddress, "nvmePort": "4420", "ctrlLossTmo": "60"}
	if !ctrlTestMapsEqual(resp.PublishContext, want) {
		t.Errorf("publish context %v, want %v", resp.PublishContext, want)
	}
	// Idempotent.
	ctrlTestMust(pub("node-a", ctrlTestRWO))(t)
	if a, ok := e.manager.Get(v.VolumeId); !ok || !slices.Equal(a.Nodes, []string{"node-a"}) {
		t.Errorf("attachment %+v", a)
	}
	// Readonly is refused: PUBLISH_READONLY is not advertised, and the
	// flag could not be compared on retries (TestPublishReadonlyRefused).
	_, err := e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
		VolumeId: v.VolumeId, NodeId: "node-a", VolumeCapability: ctrlTestRWO, VolumeContext: v.VolumeContext, Readonly: true})
	ctrlTestCode(t, err, codes.InvalidArgument)

	_, err = pub("node-b", ctrlTestRWO)
	ctrlTestCode(t, err, codes.FailedPrecondition)
	if !strings.Contains(status.Convert(err).Message(), "node-a") {
		t.Errorf("conflict does not name the holder: %v", err)
	}
	_, err = pub("node-a", ctrlTestBlockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER))
	ctrlTestCode(t, err, codes.AlreadyExists)
	// Only the refusal decided by the controller is counted by it; the
	// Manager's own refusals go through its observer.
	if n := rec.conflictCount(); n != 1 {
		t.Errorf("controller counted %d conflicts, want 1", n)
	}
	_, err = pub("node-x", ctrlTestRWO)
	ctrlTestCode(t, err, codes.NotFound)
	_, err = pub("node-flaky", ctrlTestRWO)
	ctrlTestCode(t, err, codes.Unavailable)
	_, err = pub("node-a", ctrlTestMountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, ""))
	ctrlTestCode(t, err, codes.InvalidArgument)

	for name, r := range map[string]*csi.ControllerPublishVolumeRequest{
		"no volume":     {NodeId: "node-a", VolumeCapability: ctrlTestRWO},
		"no node":       {VolumeId: v.VolumeId, VolumeCapability: ctrlTestRWO},
		"no capability": {VolumeId: v.VolumeId, NodeId: "node-a"},
		"bad context":   {VolumeId: v.VolumeId, NodeId: "node-a", VolumeCapability: ctrlTestRWO, VolumeContext: map[string]string{"nvmePort": "x"}},
	} {
		_, err := e.cc.ControllerPublishVolume(ctx, r)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	for _, id := range []string{"fake-vol-id", rdscsi.VolumeIDForName("missing")} {
		_, err := e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "node-a", VolumeCapability: ctrlTestRWO})
		ctrlTestCode(t, err, codes.NotFound)
	}

	// Unpublish: unknown volume or node succeed.
	for _, r := range []*csi.ControllerUnpublishVolumeRequest{
		{VolumeId: "fake-vol-id", NodeId: "node-a"},
		{VolumeId: rdscsi.VolumeIDForName("missing"), NodeId: "node-a"},
		{VolumeId: v.VolumeId, NodeId: "node-unknown"},
	} {
		ctrlTestMust(e.cc.ControllerUnpublishVolume(ctx, r))(t)
	}
	_, err = e.cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{NodeId: "node-a"})
	ctrlTestCode(t, err, codes.InvalidArgument)
	if _, ok := e.manager.Get(v.VolumeId); !ok {
		t.Fatal("attachment lost")
	}
	// No node: unpublished from every node.
	ctrlTestMust(e.cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v.VolumeId}))(t)
	if a, ok := e.manager.Get(v.VolumeId); ok {
		t.Errorf("still attached: %+v", a)
	}
	ctrlTestMust(pub("node-b", ctrlTestRWO))(t)
}

func TestValidateVolumeCapabilities(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{})
	ctx := context.Background()
	v := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("validate", 0)))(t).GetVolume()
	ok := ctrlTestMust(e.cc.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{
		VolumeId: v.VolumeId, VolumeCapabilities: []*csi.VolumeCapability{ctrlTestRWO, ctrlTestBlockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)}}))(t)
	if ok.GetConfirmed() == nil || len(ok.GetConfirmed().GetVolumeCapabilities()) != 2 {
		t.Errorf("not confirmed: %v", ok)
	}
	no := ctrlTestMust(e.cc.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{
		VolumeId: v.VolumeId, VolumeCapabilities: []*csi.VolumeCapability{ctrlTestMountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "")}}))(t)
	if no.GetConfirmed() != nil || no.GetMessage() == "" {
		t.Errorf("confirmed an unsupported capability: %v", no)
	}
	no = ctrlTestMust(e.cc.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{
		VolumeId: v.VolumeId, VolumeCapabilities: []*csi.VolumeCapability{ctrlTestRWO}, Parameters: map[string]string{"bogus": "1"}}))(t)
	if no.GetConfirmed() != nil {
		t.Errorf("confirmed unknown parameters: %v", no)
	}
	_, err := e.cc.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: rdscsi.VolumeIDForName("missing"), VolumeCapabilities: []*csi.VolumeCapability{ctrlTestRWO}})
	ctrlTestCode(t, err, codes.NotFound)
	_, err = e.cc.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: v.VolumeId})
	ctrlTestCode(t, err, codes.InvalidArgument)
	_, err = e.cc.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeCapabilities: []*csi.VolumeCapability{ctrlTestRWO}})
	ctrlTestCode(t, err, codes.InvalidArgument)
}

func TestListVolumes(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{})
	ctx := context.Background()
	var ids []string
	for i := 0; i < 7; i++ {
		v := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("list-"+string(rune('a'+i)), int64(i+1)*ctrlTestMiB)))(t).GetVolume()
		ids = append(ids, v.VolumeId)
	}
	// Neither snapshots nor foreign disks are volumes.
	ctrlTestMust(e.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "list-snap", SourceVolumeId: ids[0]}))(t)
	ctrlTestMust(e.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "list-snap-2", SourceVolumeId: ids[0]}))(t)
	e.rds.AddForeignDisk(rdstest.ForeignDisk{Slot: "pvc-boot", Type: "nvme", SizeBytes: ctrlTestGiB})
	ctrlTestMust(e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
		VolumeId: ids[3], NodeId: "node-a", VolumeCapability: ctrlTestRWO}))(t)
	slices.Sort(ids)

	var got []string
	token := ""
	pages := 0
	for {
		resp := ctrlTestMust(e.cc.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 3, StartingToken: token}))(t)
		pages++
		if len(resp.Entries) > 3 {
			t.Fatalf("page of %d entries", len(resp.Entries))
		}
		for _, en := range resp.Entries {
			got = append(got, en.Volume.VolumeId)
			wantNodes := []string(nil)
			if en.Volume.VolumeId == rdscsi.VolumeIDForName("list-d") {
				wantNodes = []string{"node-a"}
			}
			if en.Status == nil || !slices.Equal(en.Status.PublishedNodeIds, wantNodes) {
				t.Errorf("%s: status %v, want nodes %v", en.Volume.VolumeId, en.Status, wantNodes)
			}
		}
		if token = resp.NextToken; token == "" {
			break
		}
	}
	if !slices.Equal(got, ids) || pages != 3 {
		t.Errorf("listed %v in %d pages, want %v in 3", got, pages, ids)
	}
	all := ctrlTestMust(e.cc.ListVolumes(ctx, &csi.ListVolumesRequest{}))(t)
	if len(all.Entries) != 7 || all.NextToken != "" {
		t.Errorf("unpaged list: %d entries, token %q", len(all.Entries), all.NextToken)
	}

	// A token stays valid when the volume it names is deleted.
	first := ctrlTestMust(e.cc.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 2}))(t)
	ctrlTestMust(e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: ids[2]}))(t)
	rest := ctrlTestMust(e.cc.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: first.NextToken}))(t)
	if len(rest.Entries) != 4 || rest.Entries[0].Volume.VolumeId != ids[3] {
		t.Errorf("after deleting the token's volume: %v", rest.Entries)
	}

	for _, bad := range []string{"invalid-token", "djE6cHZjLXg", first.NextToken + "x"} {
		_, err := e.cc.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: bad})
		ctrlTestCode(t, err, codes.Aborted)
	}
	// A snapshot token is not a volume token.
	snaps := ctrlTestMust(e.cc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{MaxEntries: 1}))(t)
	if snaps.NextToken == "" {
		t.Fatal("no snapshot token")
	}
	_, err := e.cc.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: snaps.NextToken})
	ctrlTestCode(t, err, codes.Aborted)
	_, err = e.cc.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: -1})
	ctrlTestCode(t, err, codes.InvalidArgument)
}

func TestGetCapacity(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{rdsOpts: []rdstest.Option{
		rdstest.WithPool("storage-pool", 100*ctrlTestGiB),
		rdstest.WithPool("fast", 10*ctrlTestGiB),
	}})
	ctx := context.Background()
	before := ctrlTestMust(e.cc.GetCapacity(ctx, &csi.GetCapacityRequest{}))(t)
	c := ctrlTestMust(e.client.Capacity(ctx, "storage-pool"))(t)
	if before.AvailableCapacity != c.FreeBytes || before.AvailableCapacity <= 0 {
		t.Errorf("capacity %d, pool free %d", before.AvailableCapacity, c.FreeBytes)
	}
	fast := ctrlTestMust(e.cc.GetCapacity(ctx, &csi.GetCapacityRequest{Parameters: map[string]string{"volumePath": "/fast/vols"}}))(t)
	cf := ctrlTestMust(e.client.Capacity(ctx, "fast"))(t)
	if fast.AvailableCapacity != cf.FreeBytes || fast.AvailableCapacity > 10*ctrlTestGiB {
		t.Errorf("fast capacity %d, pool free %d", fast.AvailableCapacity, cf.FreeBytes)
	}
	none := ctrlTestMust(e.cc.GetCapacity(ctx, &csi.GetCapacityRequest{VolumeCapabilities: []*csi.VolumeCapability{
		ctrlTestMountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "")}}))(t)
	if none.AvailableCapacity != 0 {
		t.Errorf("capacity for unsupported capabilities %d", none.AvailableCapacity)
	}
	_, err := e.cc.GetCapacity(ctx, &csi.GetCapacityRequest{Parameters: map[string]string{"volumePath": "/missing/x"}})
	ctrlTestCode(t, err, codes.NotFound)
	_, err = e.cc.GetCapacity(ctx, &csi.GetCapacityRequest{Parameters: map[string]string{"x": "y"}})
	ctrlTestCode(t, err, codes.InvalidArgument)
}

func TestControllerExpandVolume(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{})
	ctx := context.Background()
	v := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("grow", ctrlTestGiB)))(t).GetVolume()
	blk := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("grow-block", ctrlTestGiB, ctrlTestBlockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER))))(t).GetVolume()
	// Online: expand while published.
	ctrlTestMust(e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: v.VolumeId, NodeId: "n", VolumeCapability: ctrlTestRWO}))(t)

	r := ctrlTestMust(e.cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{
		VolumeId: v.VolumeId, CapacityRange: &csi.CapacityRange{RequiredBytes: 2*ctrlTestGiB + 1}, VolumeCapability: ctrlTestRWO}))(t)
	if want := rdsclient.RoundUpSize(2*ctrlTestGiB + 1); r.CapacityBytes != want || !r.NodeExpansionRequired {
		t.Errorf("expand mount: %v, want %d bytes and node expansion", r, want)
	}
	if d := ctrlTestMust(e.client.Disk(ctx, v.VolumeId))(t); d.SizeBytes != r.CapacityBytes {
		t.Errorf("disk has %d bytes", d.SizeBytes)
	}
	// Shrinking is a no-op that reports the current size.
	r2 := ctrlTestMust(e.cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{
		VolumeId: v.VolumeId, CapacityRange: &csi.CapacityRange{RequiredBytes: ctrlTestGiB}}))(t)
	if r2.CapacityBytes != r.CapacityBytes {
		t.Errorf("shrink answered %d", r2.CapacityBytes)
	}
	rb := ctrlTestMust(e.cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{
		VolumeId: blk.VolumeId, CapacityRange: &csi.CapacityRange{RequiredBytes: 3 * ctrlTestGiB}, VolumeCapability: ctrlTestBlockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)}))(t)
	if rb.CapacityBytes != 3*ctrlTestGiB || rb.NodeExpansionRequired {
		t.Errorf("expand block: %v", rb)
	}
	_, err := e.cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: rdscsi.VolumeIDForName("nope"), CapacityRange: &csi.CapacityRange{RequiredBytes: ctrlTestGiB}})
	ctrlTestCode(t, err, codes.NotFound)
	_, err = e.cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: v.VolumeId, CapacityRange: &csi.CapacityRange{RequiredBytes: 5000, LimitBytes: 6000}})
	ctrlTestCode(t, err, codes.OutOfRange)
	_, err = e.cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: v.VolumeId})
	ctrlTestCode(t, err, codes.InvalidArgument)
	_, err = e.cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{CapacityRange: &csi.CapacityRange{RequiredBytes: 1}})
	ctrlTestCode(t, err, codes.InvalidArgument)
}

func TestControllerGetVolumeAndHealth(t *testing.T) {
	var skew atomic.Value // volume ID whose file is listed at a tenth of its size
	skew.Store("")
	e := newCtrlTestEnv(t, ctrlTestConfig{wrap: func(d rdscsi.Disks) rdscsi.Disks {
		return ctrlTestSkewedFiles{ctrlTestDisks: d, slot: func() string { return skew.Load().(string) }}
	}})
	ctx := context.Background()
	v := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("health", 64*ctrlTestMiB)))(t).GetVolume()
	ctrlTestMust(e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: v.VolumeId, NodeId: "node-a", VolumeCapability: ctrlTestRWO}))(t)

	g := ctrlTestMust(e.cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: v.VolumeId}))(t)
	if g.Volume.CapacityBytes != 64*ctrlTestMiB || !slices.Equal(g.Status.PublishedNodeIds, []string{"node-a"}) {
		t.Errorf("get volume %v", g)
	}
	h := ctrlTestMust(e.cc.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: v.VolumeId}))(t)
	if h.VolumeHealth.VolumeId != v.VolumeId || len(h.VolumeHealth.HealthStatuses) != 0 {
		t.Errorf("healthy volume reported %v", h)
	}
	for _, id := range []string{rdscsi.VolumeIDForName("nope"), "fake-vol-id"} {
		_, err := e.cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
		ctrlTestCode(t, err, codes.NotFound)
		_, err = e.cc.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: id})
		ctrlTestCode(t, err, codes.NotFound)
	}
	_, err := e.cc.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{})
	ctrlTestCode(t, err, codes.InvalidArgument)

	// A disk of ours that is not exported (made behind the driver's
	// back) is inaccessible.
	hidden := rdscsi.VolumeIDForName("hidden")
	ctrlTestMust(e.client.CreateDisk(ctx, rdsclient.DiskSpec{Slot: hidden, FilePath: ctrlTestVolumePath + "/" + hidden + ".img", SizeBytes: 16 * ctrlTestMiB}))(t)
	h = ctrlTestMust(e.cc.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: hidden}))(t)
	if !ctrlTestHasHealth(h.VolumeHealth, csi.VolumeHealthErrorType_INACCESSIBLE, rdscsi.HealthNotExported) {
		t.Errorf("unexported disk: %v", h)
	}
	// A volume whose backing file vanished has lost its data.
	lost := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("lost", 16*ctrlTestMiB)))(t).GetVolume()
	if err := os.Remove(ctrlTestMust(e.rds.DiskFile(lost.VolumeId))(t)); err != nil {
		t.Fatal(err)
	}
	h = ctrlTestMust(e.cc.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: lost.VolumeId}))(t)
	if !ctrlTestHasHealth(h.VolumeHealth, csi.VolumeHealthErrorType_DATA_LOSS, rdscsi.HealthBackingFileMissing) {
		t.Errorf("missing file: %v", h)
	}
	// A backing file whose size disagrees with the disk. The fake
	// derives both from the same file, so the listing is skewed here.
	short := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("short", 512*ctrlTestMiB)))(t).GetVolume()
	skew.Store(short.VolumeId)
	h = ctrlTestMust(e.cc.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: short.VolumeId}))(t)
	if !ctrlTestHasHealth(h.VolumeHealth, csi.VolumeHealthErrorType_DEGRADED, rdscsi.HealthSizeMismatch) {
		t.Errorf("short file: %v", h)
	}

	list := ctrlTestMust(e.cc.ControllerListVolumeHealth(ctx, &csi.ControllerListVolumeHealthRequest{}))(t)
	var bad []string
	for _, en := range list.Entries {
		bad = append(bad, en.VolumeId)
	}
	want := []string{hidden, lost.VolumeId, short.VolumeId}
	slices.Sort(want)
	if !slices.Equal(bad, want) {
		t.Errorf("unhealthy volumes %v, want %v", bad, want)
	}
	page := ctrlTestMust(e.cc.ControllerListVolumeHealth(ctx, &csi.ControllerListVolumeHealthRequest{MaxEntries: 2}))(t)
	next := ctrlTestMust(e.cc.ControllerListVolumeHealth(ctx, &csi.ControllerListVolumeHealthRequest{StartingToken: page.NextToken}))(t)
	if len(page.Entries) != 2 || len(next.Entries) != 1 || next.Entries[0].VolumeId != want[2] {
		t.Errorf("paged health: %v then %v", page.Entries, next.Entries)
	}
	_, err = e.cc.ControllerListVolumeHealth(ctx, &csi.ControllerListVolumeHealthRequest{StartingToken: "nope"})
	ctrlTestCode(t, err, codes.Aborted)
}

// ctrlTestSkewedFiles lists one volume's backing file at a tenth of its
// real size.
type ctrlTestSkewedFiles struct {
	ctrlTestDisks
	slot func() string
}

// ctrlTestDisks lets a test type embed rdscsi.Disks: a field named Disks
// would hide the method of that name.
type ctrlTestDisks = rdscsi.Disks

func (s ctrlTestSkewedFiles) Files(ctx context.Context, dir string) ([]rdsclient.File, error) {
	files, err := s.ctrlTestDisks.Files(ctx, dir)
	for i := range files {
		if slot := s.slot(); slot != "" && strings.Contains(files[i].Name, slot) {
			files[i].SizeBytes /= 10
		}
	}
	return files, err
}

func ctrlTestHasHealth(h *csi.VolumeHealth, typ csi.VolumeHealthErrorType, reason string) bool {
	for _, s := range h.GetHealthStatuses() {
		if s.Status == typ && s.Reason == reason {
			return true
		}
	}
	return false
}

func ctrlTestMapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestVolumeIDShape(t *testing.T) {
	id := rdscsi.VolumeIDForName("data-volume")
	// "pvc-" + 8-4-4-4-12, version 5, RFC 9562 variant.
	if !rdscsi.IsVolumeID(id) || len(id) != 40 || id[18] != '5' || !strings.ContainsRune("89ab", rune(id[23])) {
		t.Errorf("volume ID %q", id)
	}
	if id == rdscsi.VolumeIDForName("data-volume2") {
		t.Error("two names, one ID")
	}
	snap := rdscsi.SnapshotIDForName("data-volume")
	if !rdscsi.IsSnapshotID(snap) || rdscsi.IsVolumeID(snap) || snap[len("snap-"):] == id[len("pvc-"):] {
		t.Errorf("snapshot ID %q (volume %q)", snap, id)
	}
	if rdscsi.NQN(id) != "nqn.2000-02.com.mikrotik:"+id {
		t.Errorf("NQN %q", rdscsi.NQN(id))
	}
	for _, bad := range []string{"", "pvc-", "pvc-3F1C2A9E-8D47-4B6E-9A51-0C2D7E6F4B13", "pvc-3f1c2a9e-8d47-4b6e-9a51-0c2d7e6f4b1", "pvc-3f1c2a9e-8d47-4b6e-9a51-0c2d7e6f4b13 ", "pvc-3f1c2a9e_8d47-4b6e-9a51-0c2d7e6f4b13"} {
		if rdscsi.IsVolumeID(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestCreateVolumeOverOrphanFile: a backing file left behind by an attempt
// that died before its disk was added must not make every retry fail with
// AlreadyExists, and a file a disk still uses must never be removed.
func TestCreateVolumeOverOrphanFile(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{})
	ctx := context.Background()
	id := rdscsi.VolumeIDForName("orphaned")
	orphan := filepath.Join(e.rds.DataDir(), "storage-pool", "k8s", id+".img")
	if err := os.MkdirAll(filepath.Dir(orphan), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(orphan, []byte("left by a crashed attempt"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq("orphaned", 64<<20))
	if err != nil {
		t.Fatalf("CreateVolume over an orphan file: %v", err)
	}
	d, err := e.client.Disk(ctx, r.Volume.VolumeId)
	if err != nil || d.SizeBytes != 64<<20 {
		t.Fatalf("disk after create: %+v, %v", d, err)
	}
	// The new disk's file is in use now: creating again is idempotent and
	// keeps it.
	if _, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq("orphaned", 64<<20)); err != nil {
		t.Fatalf("idempotent create: %v", err)
	}
	if fi, err := os.Stat(orphan); err != nil || fi.Size() != 64<<20 {
		t.Fatalf("backing file after idempotent create: %v, %v", fi, err)
	}
}

// TestOrphanCleanupSparesForeignDisks: a file named after one of our IDs
// that a disk of another owner uses (another driver's, an operator's
// recovery disk) is in use, whatever that disk's slot. The cleanup of
// orphan files never asks the device to remove it: neither CreateVolume,
// which then fails with FailedPrecondition naming the disk, nor
// DeleteVolume, which has nothing of ours left to delete.
func TestOrphanCleanupSparesForeignDisks(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{})
	ctx := context.Background()
	id := rdscsi.VolumeIDForName("held")
	file := ctrlTestVolumePath + "/" + id + ".img"
	foreign := rdstest.ForeignDisk{Slot: "recovery1", Type: "file", FilePath: file, SizeBytes: 8 * ctrlTestMiB}
	e.rds.AddForeignDisk(foreign)
	e.rds.ResetCommands()
	noFileRemove := func(t *testing.T) {
		t.Helper()
		for _, c := range e.rds.Commands() {
			if strings.HasPrefix(c, "/file remove") {
				t.Errorf("sent %q for a file disk %s uses", c, foreign.Slot)
			}
		}
		d, err := e.client.Disk(ctx, foreign.Slot)
		if err != nil || d.FilePath != file {
			t.Fatalf("foreign disk %+v, %v", d, err)
		}
		if !slices.Contains(e.fileNames(t, "storage-pool/k8s"), strings.TrimPrefix(file, "/")) {
			t.Fatalf("file of the foreign disk gone: %v", e.fileNames(t, "storage-pool/k8s"))
		}
	}

	_, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq("held", 8*ctrlTestMiB))
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), foreign.Slot) {
		t.Errorf("CreateVolume over a foreign disk's file: %v, want FailedPrecondition naming %s", err, foreign.Slot)
	}
	noFileRemove(t)

	e.rds.ResetCommands()
	ctrlTestMust(e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}))(t)
	noFileRemove(t)
}
