package kube

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/rdscsi"
)

// ErrInconsistent: the cluster's objects contradict each other or the
// driver (a VolumeAttachment whose PersistentVolume is missing or belongs
// to another driver, an RWO volume attached to two nodes). The rebuild
// fails closed rather than guess: a guess could let a volume be published
// to a second node.
var ErrInconsistent = errors.New("kube: inconsistent cluster state")

// Attachments turns the cluster's view into the attachment state of the
// CSI driver named driver: every VolumeAttachment whose spec.attacher is
// driver and whose status.attached is true, grouped by the
// PersistentVolume it names, every node of it (in the order they
// attached, by creation time). pv looks a PersistentVolume up by name.
//
// From the PersistentVolume come the volume ID (spec.csi.volumeHandle),
// the mode (Migratable for a raw block ReadWriteMany volume, the one
// access the driver lets two nodes share during a live migration;
// Exclusive otherwise) and the migration timeout (the volume attribute
// rdscsi.ParamMigrationTimeout that the StorageClass set). A volume on two
// nodes started its migration when the later VolumeAttachment was
// created, so a migration keeps its deadline across controller restarts.
func Attachments(driver string, vas []*storagev1.VolumeAttachment, pv func(name string) (*corev1.PersistentVolume, error)) ([]attach.Attachment, error) {
	byPV := map[string][]*storagev1.VolumeAttachment{}
	for _, va := range vas {
		if va.Spec.Attacher != driver || !va.Status.Attached {
			continue
		}
		name := va.Spec.Source.PersistentVolumeName
		if name == nil || *name == "" {
			return nil, fmt.Errorf("%w: VolumeAttachment %s of %s names no PersistentVolume", ErrInconsistent, va.Name, driver)
		}
		byPV[*name] = append(byPV[*name], va)
	}
	out := make([]attach.Attachment, 0, len(byPV))
	for _, name := range slices.Sorted(maps.Keys(byPV)) {
		a, err := attachment(driver, name, byPV[name], pv)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func attachment(driver, pvName string, vas []*storagev1.VolumeAttachment, lookup func(string) (*corev1.PersistentVolume, error)) (attach.Attachment, error) {
	pv, err := lookup(pvName)
	if err != nil {
		return attach.Attachment{}, fmt.Errorf("kube: PersistentVolume %s of VolumeAttachment %s: %w", pvName, vas[0].Name, err)
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != driver || pv.Spec.CSI.VolumeHandle == "" {
		return attach.Attachment{}, fmt.Errorf("%w: PersistentVolume %s, attached by %s, is not a volume of that driver", ErrInconsistent, pvName, driver)
	}
	slices.SortFunc(vas, func(a, b *storagev1.VolumeAttachment) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Name, b.Name))
	})
	a := attach.Attachment{VolumeID: pv.Spec.CSI.VolumeHandle, Mode: attach.Exclusive}
	if migratable(pv) {
		a.Mode = attach.Migratable
	}
	for _, va := range vas {
		if !slices.Contains(a.Nodes, va.Spec.NodeName) {
			a.Nodes = append(a.Nodes, va.Spec.NodeName)
		}
	}
	switch {
	case len(a.Nodes) == 2 && a.Mode == attach.Migratable:
		a.MigrationStarted = startOf(vas, a.Nodes[1])
		if a.MigrationTimeout, err = migrationTimeout(pv); err != nil {
			return attach.Attachment{}, err
		}
	case len(a.Nodes) > 1:
		return attach.Attachment{}, fmt.Errorf("%w: volume %s (PersistentVolume %s, %s) is attached to %d nodes %v",
			ErrInconsistent, a.VolumeID, pvName, a.Mode, len(a.Nodes), a.Nodes)
	}
	return a, nil
}

// migratable reports the access the driver lets two nodes share: a raw
// block volume that is ReadWriteMany (MULTI_NODE_MULTI_WRITER).
func migratable(pv *corev1.PersistentVolume) bool {
	return pv.Spec.VolumeMode != nil && *pv.Spec.VolumeMode == corev1.PersistentVolumeBlock &&
		slices.Contains(pv.Spec.AccessModes, corev1.ReadWriteMany)
}

// migrationTimeout returns the PV's migration timeout attribute, or zero
// (the Manager's default) when it has none.
func migrationTimeout(pv *corev1.PersistentVolume) (time.Duration, error) {
	s, ok := pv.Spec.CSI.VolumeAttributes[rdscsi.ParamMigrationTimeout]
	if !ok {
		return 0, nil
	}
	secs, err := strconv.ParseInt(s, 10, 64)
	if err != nil || secs <= 0 {
		return 0, fmt.Errorf("%w: PersistentVolume %s: %s %q", ErrInconsistent, pv.Name, rdscsi.ParamMigrationTimeout, s)
	}
	return time.Duration(secs) * time.Second, nil
}

// startOf returns when node's first VolumeAttachment was created.
func startOf(sorted []*storagev1.VolumeAttachment, node string) time.Time {
	for _, va := range sorted {
		if va.Spec.NodeName == node {
			return va.CreationTimestamp.Time
		}
	}
	return time.Time{}
}

// Rebuild lists the VolumeAttachments and the PersistentVolumes through
// cs, two List calls whatever the number of volumes, and returns
// Attachments' result, ready for attach.Manager.Replace.
func Rebuild(ctx context.Context, cs kubernetes.Interface, driver string) ([]attach.Attachment, error) {
	vaList, err := cs.StorageV1().VolumeAttachments().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("kube: listing VolumeAttachments: %w", err)
	}
	vas := make([]*storagev1.VolumeAttachment, len(vaList.Items))
	for i := range vaList.Items {
		vas[i] = &vaList.Items[i]
	}
	pvList, err := cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("kube: listing PersistentVolumes: %w", err)
	}
	pvs := make(map[string]*corev1.PersistentVolume, len(pvList.Items))
	for i := range pvList.Items {
		pvs[pvList.Items[i].Name] = &pvList.Items[i]
	}
	return Attachments(driver, vas, func(name string) (*corev1.PersistentVolume, error) {
		if pv, ok := pvs[name]; ok {
			return pv, nil
		}
		return nil, fmt.Errorf("%w: not found", ErrInconsistent)
	})
}
