package kube

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/srvlab/rds-csi/attach"
)

// TestClaimsInDeliveryOrder: two VolumeAttachments claim one RWO volume
// for two nodes, created in the same second. The informer's cache holds
// both by the time the handler of the first one runs (the cache runs
// ahead of the handlers). The claim delivered first must win, as it does
// in a replica whose cache held only that one: deciding by creation time
// and name instead let one replica attach each node, a double attach
// TestFailoverKill9 caught under load.
func TestClaimsInDeliveryOrder(t *testing.T) {
	ctx := context.Background()
	const driver, volume = "rds.csi.test", "pvc-1"
	created := metav1.NewTime(time.Now().Truncate(time.Second))
	va := func(node string, uid types.UID) *storagev1.VolumeAttachment {
		pv := "pv-1"
		return &storagev1.VolumeAttachment{
			ObjectMeta: metav1.ObjectMeta{Name: "csi-pv-1-" + node, UID: uid, CreationTimestamp: created},
			Spec: storagev1.VolumeAttachmentSpec{Attacher: driver, NodeName: node,
				Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: &pv}},
		}
	}
	// Named so that name order is the reverse of delivery order.
	first, second := va("n3", "uid-a"), va("n2", "uid-b")

	for _, cacheAhead := range []bool{false, true} {
		m, err := attach.NewManager(ctx, attach.NewMemStore())
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		c, err := NewCluster(fake.NewClientset(), driver, m)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.pvs.GetIndexer().Add(&corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: "pv-1"},
			Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{
				CSI: &corev1.CSIPersistentVolumeSource{Driver: driver, VolumeHandle: volume}}},
		}); err != nil {
			t.Fatal(err)
		}
		c.built = true // as after the rebuild of an empty cluster

		// The informer stores an object, then calls the handlers.
		deliver := func(va *storagev1.VolumeAttachment) {
			if err := c.vas.GetIndexer().Add(va); err != nil {
				t.Fatal(err)
			}
		}
		if cacheAhead {
			deliver(first)
			deliver(second)
			c.onVA(first)
			c.onVA(second)
		} else {
			deliver(first)
			c.onVA(first)
			deliver(second)
			c.onVA(second)
		}
		a, _ := m.Get(volume)
		if !slices.Equal(a.Nodes, []string{"n3"}) {
			t.Errorf("cache ahead %v: %s attached to %v, want [n3], the claim delivered first", cacheAhead, volume, a.Nodes)
		}
		if c.claimApplied(volume, "n2") && m.Attach(ctx, attach.Request{VolumeID: volume, NodeID: "n2", Mode: attach.Exclusive}) == nil {
			t.Errorf("cache ahead %v: n2 attached beside n3", cacheAhead)
		}
	}
}
