package kube_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/attach/kube"
	"github.com/srvlab/rds-csi/rdscsi"
)

const driver = "rds.csi.srvlab.io"

func newPV(name, handle string, block, rwx bool, attrs map[string]string) *corev1.PersistentVolume {
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: driver, VolumeHandle: handle, VolumeAttributes: attrs,
			}},
		},
	}
	if rwx {
		pv.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
	}
	if block {
		m := corev1.PersistentVolumeBlock
		pv.Spec.VolumeMode = &m
	}
	return pv
}

func newVA(name, attacher, pv, node string, attached bool, created time.Time) *storagev1.VolumeAttachment {
	return &storagev1.VolumeAttachment{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created)},
		Spec: storagev1.VolumeAttachmentSpec{
			Attacher: attacher, NodeName: node,
			Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: &pv},
		},
		Status: storagev1.VolumeAttachmentStatus{Attached: attached},
	}
}

func lookupIn(pvs ...*corev1.PersistentVolume) func(string) (*corev1.PersistentVolume, error) {
	return func(name string) (*corev1.PersistentVolume, error) {
		for _, pv := range pvs {
			if pv.Name == name {
				return pv, nil
			}
		}
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "persistentvolumes"}, name)
	}
}

func TestAttachments(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	rwo := newPV("pv-rwo", "pvc-rwo", false, false, nil)
	vm := newPV("pv-vm", "pvc-vm", true, true, map[string]string{rdscsi.ParamMigrationTimeout: "300"})
	vas := []*storagev1.VolumeAttachment{
		newVA("va-3", driver, "pv-vm", "node-b", true, t0.Add(2*time.Minute)), // listed first, attached later
		newVA("va-2", driver, "pv-vm", "node-a", true, t0),
		newVA("va-1", driver, "pv-rwo", "node-a", true, t0),
		newVA("va-other", "other.csi.example.com", "pv-foreign", "node-a", true, t0),
		newVA("va-pending", driver, "pv-pending", "node-a", false, t0),
	}
	got, err := kube.Attachments(driver, vas, lookupIn(rwo, vm))
	if err != nil {
		t.Fatal(err)
	}
	want := []attach.Attachment{
		{VolumeID: "pvc-rwo", Mode: attach.Exclusive, Nodes: []string{"node-a"}},
		{VolumeID: "pvc-vm", Mode: attach.Migratable, Nodes: []string{"node-a", "node-b"},
			MigrationStarted: t0.Add(2 * time.Minute), MigrationTimeout: 5 * time.Minute},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Attachments =\n%+v\nwant\n%+v", got, want)
	}

	for name, tc := range map[string]struct {
		vas []*storagev1.VolumeAttachment
		pvs []*corev1.PersistentVolume
		say string
	}{
		"RWO on two nodes": {
			vas: []*storagev1.VolumeAttachment{newVA("a", driver, "pv-rwo", "n1", true, t0), newVA("b", driver, "pv-rwo", "n2", true, t0)},
			pvs: []*corev1.PersistentVolume{rwo}, say: "attached to 2 nodes",
		},
		"PV missing": {
			vas: []*storagev1.VolumeAttachment{newVA("a", driver, "pv-gone", "n1", true, t0)},
			say: "not found",
		},
		"PV of another driver": {
			vas: []*storagev1.VolumeAttachment{newVA("a", driver, "pv-x", "n1", true, t0)},
			pvs: []*corev1.PersistentVolume{func() *corev1.PersistentVolume {
				p := newPV("pv-x", "h", false, false, nil)
				p.Spec.CSI.Driver = "other"
				return p
			}()}, say: "not a volume of that driver",
		},
		"bad migration timeout": {
			vas: []*storagev1.VolumeAttachment{newVA("a", driver, "pv-bad", "n1", true, t0), newVA("b", driver, "pv-bad", "n2", true, t0.Add(time.Second))},
			pvs: []*corev1.PersistentVolume{newPV("pv-bad", "h", true, true, map[string]string{rdscsi.ParamMigrationTimeout: "soon"})},
			say: "soon",
		},
		"three nodes": {
			vas: []*storagev1.VolumeAttachment{newVA("a", driver, "pv-vm", "n1", true, t0), newVA("b", driver, "pv-vm", "n2", true, t0), newVA("c", driver, "pv-vm", "n3", true, t0)},
			pvs: []*corev1.PersistentVolume{vm}, say: "3 nodes",
		},
	} {
		_, err := kube.Attachments(driver, tc.vas, lookupIn(tc.pvs...))
		if err == nil || !strings.Contains(err.Error(), tc.say) {
			t.Errorf("%s: %v, want an error saying %q", name, err, tc.say)
		}
		if name != "PV missing" && !errors.Is(err, kube.ErrInconsistent) {
			t.Errorf("%s: %v does not wrap ErrInconsistent", name, err)
		}
	}
}

// TestRebuildFromAPIServer: 16 volumes attached through VolumeAttachments,
// 2 of them migrating to a second node, rebuilt from a real API server
// into an attach.Manager: 16 volumes, 18 node attachments, 2 migrations.
func TestRebuildFromAPIServer(t *testing.T) {
	_, ctx, cs := startCluster(t)
	attachVA := func(name, pv, node, attacher string) {
		t.Helper()
		va, err := cs.StorageV1().VolumeAttachments().Create(ctx, newVA(name, attacher, pv, node, false, time.Time{}), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		va.Status.Attached = true // as the external-attacher records it
		if _, err := cs.StorageV1().VolumeAttachments().UpdateStatus(ctx, va, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 16 {
		migrating := i >= 14
		pv := newPV(fmt.Sprintf("pv-%02d", i), fmt.Sprintf("pvc-%02d", i), migrating, migrating,
			map[string]string{rdscsi.ParamMigrationTimeout: "600"})
		if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		attachVA(fmt.Sprintf("va-%02d-a", i), pv.Name, "node-a", driver)
		if migrating {
			attachVA(fmt.Sprintf("va-%02d-b", i), pv.Name, "node-b", driver)
		}
	}
	// Another driver's attachment is not ours.
	other := newPV("pv-other", "vol-other", false, false, nil)
	other.Spec.CSI.Driver = "other.csi.example.com"
	if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	attachVA("va-other", "pv-other", "node-a", "other.csi.example.com")

	as, err := kube.Rebuild(ctx, cs, driver)
	if err != nil {
		t.Fatal(err)
	}
	m, err := attach.NewManager(ctx, attach.NewMemStore())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Replace(ctx, as); err != nil {
		t.Fatal(err)
	}
	c := m.Counts()
	if c.Volumes != 16 || c.NodeAttachments != 18 || c.Migrations != 2 || c.TimedOutMigrations != 0 {
		t.Fatalf("counts after rebuild %+v, want 16 volumes, 18 node attachments, 2 migrations", c)
	}
	a, ok := m.Get("pvc-15")
	if !ok || a.Mode != attach.Migratable || a.MigrationTimeout != 10*time.Minute || a.MigrationStarted.IsZero() {
		t.Fatalf("migrating volume %+v (found %v)", a, ok)
	}
}
