package rdscsi_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	mount "k8s.io/mount-utils"

	"github.com/srvlab/rds-csi/rdscsi"
)

// TestCapabilityAgreement runs every access mode, with raw block and with
// a file system, through the controller (CreateVolume,
// ValidateVolumeCapabilities, ControllerPublishVolume) and the node
// (NodeStageVolume, NodePublishVolume): they must admit the same
// capabilities, refuse the others alike with InvalidArgument, and the
// controller must attach exactly MULTI_NODE_MULTI_WRITER block volumes to
// a second node.
func TestCapabilityAgreement(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{})
	ctx := context.Background()
	conn := &nodeTestFakeConnector{}
	ns, err := rdscsi.NewNodeServer("node-a", conn, rdscsi.WithStateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	existing := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("cap-existing", 0)))(t).GetVolume()
	dir := t.TempDir()

	// The semantics chosen: every single-node mode with block or a file
	// system, attached to one node; MULTI_NODE_MULTI_WRITER for raw block
	// only, attachable to a second node for a live migration; nothing else.
	type want struct{ ok, migratable bool }
	single := map[string]want{"block": {ok: true}, "mount": {ok: true}}
	table := map[csi.VolumeCapability_AccessMode_Mode]map[string]want{
		csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER:        single,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY:   single,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER: single,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:  single,
		csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:   {"block": {ok: true, migratable: true}},
	}
	var modes []csi.VolumeCapability_AccessMode_Mode
	for v := range csi.VolumeCapability_AccessMode_Mode_name {
		modes = append(modes, csi.VolumeCapability_AccessMode_Mode(v))
	}
	slices.Sort(modes)
	modes = append(modes, 99) // a mode of a later spec version

	for _, mode := range modes {
		for _, kind := range []string{"block", "mount"} {
			t.Run(fmt.Sprintf("%v/%s", mode, kind), func(t *testing.T) {
				w := table[mode][kind]
				vc := ctrlTestBlockCap(mode)
				if kind == "mount" {
					vc = ctrlTestMountCap(mode, "xfs")
				}
				refused := func(what string, err error) bool {
					t.Helper()
					if err != nil && rdscsi.Code(err) != codes.InvalidArgument {
						t.Fatalf("%s: %v, want success or InvalidArgument", what, err)
					}
					return err != nil
				}

				// Controller.
				req := ctrlTestCreateReq(fmt.Sprintf("cap-%d-%s", mode, kind), 0, vc)
				req.Parameters = map[string]string{"migrationTimeoutSeconds": "300"}
				created, err := e.cc.CreateVolume(ctx, req)
				createOK := !refused("CreateVolume", err)
				val := ctrlTestMust(e.cc.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{
					VolumeId: existing.VolumeId, VolumeCapabilities: []*csi.VolumeCapability{vc}}))(t)
				validateOK := val.GetConfirmed() != nil
				_, err = e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
					VolumeId: existing.VolumeId, NodeId: "node-x", VolumeCapability: vc, VolumeContext: existing.VolumeContext})
				publishOK := !refused("ControllerPublishVolume", err)
				if publishOK {
					ctrlTestMust(e.cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: existing.VolumeId}))(t)
				}

				// Node: an admitted capability gets as far as the
				// connector (stage) or the missing stage (publish).
				id := nodeTestVolumeID(t)
				staging := filepath.Join(dir, fmt.Sprintf("staging-%d-%s", mode, kind))
				calls := len(conn.Calls())
				_, err = ns.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{
					VolumeId: id, StagingTargetPath: staging, VolumeCapability: vc, VolumeContext: nodeTestContext(id)})
				stageOK := len(conn.Calls()) > calls
				if stageOK == (rdscsi.Code(err) == codes.InvalidArgument) {
					t.Errorf("NodeStageVolume: %v, connector reached: %t", err, stageOK)
				}
				_, err = ns.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
					VolumeId: id, StagingTargetPath: staging, TargetPath: filepath.Join(dir, "target"), VolumeCapability: vc})
				nodePublishOK := rdscsi.Code(err) != codes.InvalidArgument
				if nodePublishOK && rdscsi.Code(err) != codes.FailedPrecondition {
					t.Errorf("NodePublishVolume of an unstaged volume: %v, want FailedPrecondition", err)
				}

				got := map[string]bool{"CreateVolume": createOK, "ValidateVolumeCapabilities": validateOK,
					"ControllerPublishVolume": publishOK, "NodeStageVolume": stageOK, "NodePublishVolume": nodePublishOK}
				for rpc, ok := range got {
					if ok != w.ok {
						t.Errorf("%s admits it: %t, want %t", rpc, ok, w.ok)
					}
				}
				if !createOK {
					return
				}

				// Attachment: a second node only for a migratable volume.
				v := created.GetVolume()
				pub := func(node string) error {
					_, err := e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
						VolumeId: v.VolumeId, NodeId: node, VolumeCapability: vc, VolumeContext: v.VolumeContext})
					return err
				}
				if err := pub("node-a"); err != nil {
					t.Fatalf("publish to node-a: %v", err)
				}
				err = pub("node-b")
				switch {
				case w.migratable && err != nil:
					t.Errorf("migration to node-b refused: %v", err)
				case !w.migratable && rdscsi.Code(err) != codes.FailedPrecondition:
					t.Errorf("second node: %v, want FailedPrecondition", err)
				}
				ctrlTestMust(e.cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v.VolumeId}))(t)
				ctrlTestMust(e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.VolumeId}))(t)
			})
		}
	}
}

// TestReaderOnlyOnNode: SINGLE_NODE_READER_ONLY is served read-only by the
// node for block and mount volumes alike, whatever the publish flag says,
// and a retried stage of it succeeds.
func TestReaderOnlyOnNode(t *testing.T) {
	e := nodeTestSetup(t)
	for _, kind := range []string{"block", "mount"} {
		t.Run(kind, func(t *testing.T) {
			id := e.createDisk(64 << 20)
			vc := nodeTestBlockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY)
			if kind == "mount" {
				// A blank device is never formatted read-only: format it first.
				e.must(e.stage(e.ns, id, filepath.Join(e.dir, kind+"-rw"), nodeTestMountCap("ext4", nodeTestSNW)))
				e.must(e.unstage(e.ns, id, filepath.Join(e.dir, kind+"-rw")))
				vc = nodeTestMountCap("ext4", csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY)
			}
			staging, target := filepath.Join(e.dir, kind+"-staging"), filepath.Join(e.dir, kind+"-target")
			e.must(e.stage(e.ns, id, staging, vc))
			if err := e.stage(e.ns, id, staging, vc); err != nil {
				t.Errorf("retried stage: %v", err)
			}
			for range 2 {
				if err := e.publish(e.ns, id, staging, target, vc, false); err != nil {
					t.Fatalf("publish: %v", err)
				}
			}
			infos, err := mount.ParseMountInfo("/proc/self/mountinfo")
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, m := range infos {
				if m.MountPoint == target {
					found = true
					if !slices.Contains(m.MountOptions, "ro") {
						t.Errorf("%s mounted with %v, want ro", target, m.MountOptions)
					}
				}
			}
			if !found {
				t.Errorf("%s not mounted", target)
			}
			e.must(e.unpublish(e.ns, id, target))
			e.must(e.unstage(e.ns, id, staging))
		})
	}
}
