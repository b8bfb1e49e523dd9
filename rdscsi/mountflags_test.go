package rdscsi_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/rdscsi"
)

// mount-utils joins mount flags with commas into one -o, so a flag is a
// list of options: each one is checked, whatever the spacing and case.
func TestNodeRefusesBindAndRemountHiddenInMountFlags(t *testing.T) {
	for _, tc := range []struct {
		flags  []string
		refuse bool
	}{
		{[]string{"bind"}, true},
		{[]string{"noatime,bind"}, true},
		{[]string{" bind"}, true},
		{[]string{"bind "}, true},
		{[]string{"noatime", "rbind"}, true},
		{[]string{"remount,ro"}, true},
		{[]string{"ro, remount"}, true},
		{[]string{"noatime,RBind"}, true},
		{[]string{"move"}, true},
		{[]string{"bind=1"}, true},
		{[]string{"noatime,"}, true},
		{[]string{"noatime,,nodiratime"}, true},
		{[]string{""}, true},
		{[]string{"noatime"}, false},
		{[]string{"noatime,nodiratime", "discard"}, false},
		{[]string{"data=ordered,errors=remount-ro"}, false},
		{[]string{"commit=30"}, false},
	} {
		conn := &nodeTestFakeConnector{}
		ns, err := rdscsi.NewNodeServer("node-1", conn, rdscsi.WithStateDir(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		id := nodeTestVolumeID(t)
		dir := t.TempDir()
		vc := nodeTestMountCap("ext4", nodeTestSNW)
		vc.GetMount().MountFlags = tc.flags
		_, stageErr := ns.NodeStageVolume(context.Background(), &csi.NodeStageVolumeRequest{
			VolumeId: id, StagingTargetPath: filepath.Join(dir, "staging"), VolumeCapability: vc, VolumeContext: nodeTestContext(id)})
		_, publishErr := ns.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
			VolumeId: id, StagingTargetPath: filepath.Join(dir, "staging"), TargetPath: filepath.Join(dir, "target"),
			VolumeCapability: vc, VolumeContext: nodeTestContext(id)})
		for rpc, err := range map[string]error{"NodeStageVolume": stageErr, "NodePublishVolume": publishErr} {
			if refused := status.Code(err) == codes.InvalidArgument; refused != tc.refuse {
				t.Errorf("%s with mount flags %q: %v, refused %t, want %t", rpc, tc.flags, err, refused, tc.refuse)
			}
		}
		// A refused stage never reaches the device.
		if calls := conn.Calls(); tc.refuse && len(calls) != 0 {
			t.Errorf("mount flags %q: stage reached the connector: %q", tc.flags, calls)
		}
	}
}
