package kube_test

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"

	"github.com/srvlab/rds-csi/attach/kube"
	"github.com/srvlab/rds-csi/rdscsi"
)

// A KubeVirt VM's raw block RWX volume is attached to its old node and,
// since a minute later, to the new one: the rebuild finds a migration that
// started when the second VolumeAttachment was created, with the timeout
// the StorageClass set. Attachments not yet attached, or of another
// driver, are not ours.
func ExampleAttachments() {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	pv := newPV("pv-vm", "pvc-vm", true, true, map[string]string{rdscsi.ParamMigrationTimeout: "300"})
	vas := []*storagev1.VolumeAttachment{
		newVA("va-old", "rds.csi.srvlab.io", "pv-vm", "node-a", true, t0),
		newVA("va-new", "rds.csi.srvlab.io", "pv-vm", "node-b", true, t0.Add(time.Minute)),
		newVA("va-pending", "rds.csi.srvlab.io", "pv-other", "node-c", false, t0),
		newVA("va-foreign", "other.csi.example.com", "pv-foreign", "node-a", true, t0),
	}
	as, err := kube.Attachments("rds.csi.srvlab.io", vas, func(string) (*corev1.PersistentVolume, error) { return pv, nil })
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, a := range as {
		fmt.Println(a.VolumeID, a.Mode, a.Nodes, a.MigrationStarted.Format(time.TimeOnly), a.MigrationTimeout)
	}
	// Output:
	// pvc-vm migratable [node-a node-b] 10:01:00 5m0s
}
