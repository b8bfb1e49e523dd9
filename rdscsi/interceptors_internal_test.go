package rdscsi

import (
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func TestSanitizedJSON(t *testing.T) {
	req := &csi.NodeStageVolumeRequest{
		VolumeId:          "pvc-1",
		StagingTargetPath: "/staging",
		Secrets:           map[string]string{"chap": "p4ss"},
		VolumeContext:     map[string]string{"nqn": "nqn.x"},
	}
	out := sanitizedJSON(req)
	if strings.Contains(out, "p4ss") || !strings.Contains(out, StrippedSecret) || !strings.Contains(out, "nqn.x") || !strings.Contains(out, "/staging") {
		t.Errorf("sanitized: %s", out)
	}
	if req.Secrets["chap"] != "p4ss" {
		t.Error("the request itself was changed")
	}
	// Every secret-bearing request of the spec is covered: the field
	// option, not a list of names, decides.
	for _, m := range []interface {
		GetSecrets() map[string]string
	}{
		&csi.DeleteVolumeRequest{Secrets: map[string]string{"k": "p4ss"}},
		&csi.ControllerExpandVolumeRequest{Secrets: map[string]string{"k": "p4ss"}},
		&csi.NodePublishVolumeRequest{Secrets: map[string]string{"k": "p4ss"}},
		&csi.ListSnapshotsRequest{Secrets: map[string]string{"k": "p4ss"}},
		&csi.GetSnapshotRequest{Secrets: map[string]string{"k": "p4ss"}},
		&csi.ControllerModifyVolumeRequest{Secrets: map[string]string{"k": "p4ss"}},
	} {
		if out := sanitizedJSON(m); strings.Contains(out, "p4ss") {
			t.Errorf("%T: %s", m, out)
		}
	}
	if out := sanitizedJSON(&csi.ListVolumesRequest{MaxEntries: 3}); !strings.Contains(out, "3") {
		t.Errorf("plain message: %s", out)
	}
	if out := sanitizedJSON("not a message"); out != "" {
		t.Errorf("non-message: %q", out)
	}
}
