package kube_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/srvlab/rds-csi/attach/kube"
)

// TestLeastRules runs Rebuild and the Node informer as a service account
// bound to exactly ClusterRules: they work, and each rule is needed (the
// same account without the VolumeAttachment rule is Forbidden), while
// anything beyond the rules (changing a PV) stays Forbidden.
func TestLeastRules(t *testing.T) {
	s, ctx, admin := startCluster(t)
	const ns, sa = "kube-system", "rds-csi-controller"
	bind := func(name string, rules []rbacv1.PolicyRule) {
		t.Helper()
		if _, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	bind(sa, kube.ClusterRules)
	bind("no-va", kube.ClusterRules[1:]) // everything but VolumeAttachments
	as := func(name string) kubernetes.Interface {
		cs, err := kubernetes.NewForConfig(s.ConfigFor("system:serviceaccount:"+ns+":"+name, "system:serviceaccounts", "system:serviceaccounts:"+ns))
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}

	pv := newPV("pv-1", "pvc-1", false, false, nil)
	if _, err := admin.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	va, err := admin.StorageV1().VolumeAttachments().Create(ctx, newVA("va-1", driver, "pv-1", "node-1", false, time.Time{}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	va.Status.Attached = true
	if _, err := admin.StorageV1().VolumeAttachments().UpdateStatus(ctx, va, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	ctrl := as(sa)
	got, err := kube.Rebuild(ctx, ctrl, driver)
	if err != nil || len(got) != 1 || got[0].VolumeID != "pvc-1" {
		t.Fatalf("Rebuild with the least rules: %+v, %v", got, err)
	}
	factory := informers.NewSharedInformerFactory(ctrl, 0)
	nodes := kube.NewNodes(factory)
	startInformers(t, ctx, factory) // needs list and watch of Nodes
	if ok, err := nodes.Exists(ctx, "node-1"); !ok || err != nil {
		t.Fatalf("node lookup with the least rules: %v, %v", ok, err)
	}
	if _, err := ctrl.CoreV1().Events("default").Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: "pv-1."},
		InvolvedObject: corev1.ObjectReference{Kind: "PersistentVolume", Name: "pv-1", APIVersion: "v1"},
		Reason:         "Test", Message: "an Event on a PersistentVolume", Type: corev1.EventTypeNormal,
	}, metav1.CreateOptions{}); err != nil {
		t.Errorf("posting an Event with the least rules: %v", err)
	}

	if _, err := kube.Rebuild(ctx, as("no-va"), driver); !apierrors.IsForbidden(err) {
		t.Errorf("Rebuild without the VolumeAttachment rule: %v, want Forbidden", err)
	}
	if err := ctrl.CoreV1().PersistentVolumes().Delete(ctx, "pv-1", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("deleting a PV with the least rules: %v, want Forbidden", err)
	}
}
