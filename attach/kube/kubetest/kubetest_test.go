package kubetest_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/srvlab/rds-csi/attach/kube/kubetest"
)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestServerBehavesLikeACluster checks the behaviour the client-go fakes
// lack and the attachment code will rely on: timestamps and
// resourceVersions are assigned, a stale update is refused, status is
// written only through its subresource, and RBAC applies to an
// impersonated service account.
func TestServerBehavesLikeACluster(t *testing.T) {
	s := kubetest.Start(t)
	ctx := ctxFor(t)
	cs, err := kubernetes.NewForConfig(s.Config())
	if err != nil {
		t.Fatal(err)
	}

	node, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if node.ResourceVersion == "" || node.CreationTimestamp.IsZero() {
		t.Fatalf("node without resourceVersion or creationTimestamp: %+v", node.ObjectMeta)
	}
	fresh := node.DeepCopy()
	fresh.Labels = map[string]string{"a": "1"}
	if _, err := cs.CoreV1().Nodes().Update(ctx, fresh, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	stale := node.DeepCopy() // still the first resourceVersion
	stale.Labels = map[string]string{"a": "2"}
	if _, err := cs.CoreV1().Nodes().Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("update with a stale resourceVersion: %v, want Conflict", err)
	}

	pv := "pv-1"
	va := &storagev1.VolumeAttachment{
		ObjectMeta: metav1.ObjectMeta{Name: "va-1"},
		Spec: storagev1.VolumeAttachmentSpec{
			Attacher: "rds.csi.srvlab.io",
			NodeName: "node-1",
			Source:   storagev1.VolumeAttachmentSource{PersistentVolumeName: &pv},
		},
	}
	va, err = cs.StorageV1().VolumeAttachments().Create(ctx, va, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	va.Status.Attached = true
	if va, err = cs.StorageV1().VolumeAttachments().Update(ctx, va, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if va.Status.Attached {
		t.Fatal("a plain Update wrote status; the status subresource is not in force")
	}
	va.Status.Attached = true
	if va, err = cs.StorageV1().VolumeAttachments().UpdateStatus(ctx, va, metav1.UpdateOptions{}); err != nil || !va.Status.Attached {
		t.Fatalf("UpdateStatus: attached=%v, %v", va != nil && va.Status.Attached, err)
	}

	// An impersonated service account has no rights until RBAC grants them.
	sa := "system:serviceaccount:kube-system:rds-csi-controller"
	saCS, err := kubernetes.NewForConfig(s.ConfigFor(sa, "system:serviceaccounts", "system:serviceaccounts:kube-system"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := saCS.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list nodes without a grant: %v, want Forbidden", err)
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "read-nodes"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "read-nodes"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "read-nodes"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "rds-csi-controller", Namespace: "kube-system"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	nodes, err := saCS.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 1 {
		t.Fatalf("list nodes with a grant: %v, %v", nodes, err)
	}
	if err := saCS.CoreV1().Nodes().Delete(ctx, "node-1", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("delete a node with a read-only grant: %v, want Forbidden", err)
	}
}

// TestStopEndsBoth: after Stop, the server no longer answers, and a
// second Stop is harmless.
func TestStopEndsBoth(t *testing.T) {
	s := kubetest.Start(t)
	cs, err := kubernetes.NewForConfig(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	if _, err := cs.Discovery().ServerVersion(); err != nil {
		t.Fatal(err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil || v.GitVersion != kubetest.KubeAPIServerVersion {
		t.Fatalf("server version %v, %v; want %s", v, err, kubetest.KubeAPIServerVersion)
	}
	s.Stop()
	s.Stop()
	if _, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
		t.Fatal("the API server still answers after Stop")
	}
}
