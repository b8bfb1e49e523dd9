package rdscsi_test

import (
	"testing"

	"github.com/srvlab/rds-csi/rdscsi"
)

// The IDs CreateVolume and CreateSnapshot derive from CO names are
// stored on the device and in the cluster: they must never change. These
// vectors were computed with the hand-written SHA-1 name UUID that
// preceded github.com/google/uuid.
func TestIDsForNamesArePinned(t *testing.T) {
	volumes := []struct{ name, id string }{
		{"pvc-1", "pvc-9044f437-a405-5aee-87db-5df6b99c2748"},
		{"default-size", "pvc-fc950483-b7ac-59d2-9c0d-6ae8243b5ab2"},
		{"my-volume", "pvc-c1eae541-446d-5e69-94eb-8c78ed30f22e"},
		{"", "pvc-e052b615-fb1a-5efe-bb0b-6474e94a0907"},
		{"ÄÖÜ ünïcode/ℕ", "pvc-6b966baa-cc74-5022-9d7f-165c1d20ea7a"},
		// Not a volume ID of ours: upper case, one digit short.
		{"PVC-6B1E3C52-0F4A-4D57-9B3F-5264732D6373", "pvc-1ad71d53-df17-5c0a-ab8c-978ec028ecb4"},
		{"pvc-6b1e3c52-0f4a-4d57-9b3f-5264732d636", "pvc-a43d7f9c-85b2-53a8-a9a1-f5b9f8fa617c"},
		// Already a volume ID: kept as is.
		{"pvc-6b1e3c52-0f4a-4d57-9b3f-5264732d6373", "pvc-6b1e3c52-0f4a-4d57-9b3f-5264732d6373"},
	}
	for _, v := range volumes {
		if got := rdscsi.VolumeIDForName(v.name); got != v.id {
			t.Errorf("VolumeIDForName(%q) = %s, want %s", v.name, got, v.id)
		}
	}
	snapshots := []struct{ name, id string }{
		{"snapshot-1", "snap-c4595f70-4796-5f79-ae5e-a65c72727882"},
		{"my-snap", "snap-e2426865-e8b8-5267-8cb5-f597efb15351"},
		{"", "snap-1a711634-7b0e-5761-bea6-5a8537235cd9"},
		{"ÄÖÜ ünïcode/ℕ", "snap-c690163e-6ed4-5429-90b7-ca3139ce8568"},
		// Volume and snapshot names live in separate namespaces.
		{"pvc-1", "snap-80deae50-bbe8-569e-9ee4-88b2590c2faf"},
	}
	for _, s := range snapshots {
		if got := rdscsi.SnapshotIDForName(s.name); got != s.id {
			t.Errorf("SnapshotIDForName(%q) = %s, want %s", s.name, got, s.id)
		}
	}
}
