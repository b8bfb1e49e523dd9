package kubetest_test

import (
	"context"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/srvlab/rds-csi/attach/kube/kubetest"
)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func clientFor(t *testing.T, c *rest.Config) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	return cs
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

// TestStopAndStartAPIServer: the API server comes back on the same
// address over the same etcd, and clients made before the stop, as the
// administrator or impersonating a user, work again and see the objects
// made before it.
func TestStopAndStartAPIServer(t *testing.T) {
	s := kubetest.Start(t)
	ctx := ctxFor(t)
	admin := clientFor(t, s.Config())
	const nobody = "system:serviceaccount:default:nobody"
	user := clientFor(t, s.ConfigFor(nobody, "system:serviceaccounts"))

	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kept"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm, err := admin.CoreV1().ConfigMaps("kept").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cm"},
		Data:       map[string]string{"k": "v"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StartAPIServer(); err == nil {
		t.Fatal("StartAPIServer with the API server running: no error")
	}
	url := s.URL()

	s.StopAPIServer()
	s.StopAPIServer() // does nothing
	if etcd, apiserver := s.Exited(); etcd || !apiserver {
		t.Fatalf("after StopAPIServer: etcd exited %v, API server exited %v; want false, true", etcd, apiserver)
	}
	short := s.Config()
	short.Timeout = 2 * time.Second
	if _, err := clientFor(t, short).CoreV1().ConfigMaps("kept").Get(ctx, "cm", metav1.GetOptions{}); err == nil {
		t.Fatal("the API server answers after StopAPIServer")
	}

	if err := s.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	if s.URL() != url {
		t.Fatalf("URL %s after the restart, %s before", s.URL(), url)
	}
	got, err := admin.CoreV1().ConfigMaps("kept").Get(ctx, "cm", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.UID != cm.UID || got.Data["k"] != "v" {
		t.Fatalf("config map after the restart: uid %s data %v; before: uid %s data %v", got.UID, got.Data, cm.UID, cm.Data)
	}
	got.Data["k"] = "w"
	if _, err := admin.CoreV1().ConfigMaps("kept").Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().ConfigMaps("kept").Update(ctx, cm, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("update with the resourceVersion from before the restart: %v, want Conflict", err)
	}
	// The impersonating client is authenticated (Forbidden, not
	// Unauthorized) and still subject to RBAC.
	if _, err := user.CoreV1().ConfigMaps("kept").Get(ctx, "cm", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("get as %s after the restart: %v, want Forbidden", nobody, err)
	}
}

// TestStopWithAPIServerStopped: Stop ends etcd too when the API server
// is stopped already, may be repeated, and rules out StartAPIServer.
func TestStopWithAPIServerStopped(t *testing.T) {
	s := kubetest.Start(t)
	s.StopAPIServer()
	s.Stop()
	s.Stop()
	if etcd, apiserver := s.Exited(); !etcd || !apiserver {
		t.Fatalf("after Stop: etcd exited %v, API server exited %v; want both", etcd, apiserver)
	}
	if err := s.StartAPIServer(); err == nil {
		t.Fatal("StartAPIServer after Stop: no error")
	}
	if _, apiserver := s.Exited(); !apiserver {
		t.Fatal("StartAPIServer after Stop started the API server")
	}
}

// TestWriteKubeconfig: a kubeconfig file, loaded as a separate process
// would load it, reaches the server with the administrator's identity
// (user "") or with exactly the identity ConfigFor gives.
func TestWriteKubeconfig(t *testing.T) {
	s := kubetest.Start(t)
	ctx := ctxFor(t)
	dir := t.TempDir()
	adminPath := filepath.Join(dir, "admin", "kubeconfig") // a directory to create
	userPath := filepath.Join(dir, "alice.kubeconfig")
	const alice = "alice" // bound to no role
	groups := []string{"team-a", "team-b"}
	if err := s.WriteKubeconfig(adminPath, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteKubeconfig(userPath, alice, groups...); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteKubeconfig(filepath.Join(dir, "groups-only"), "", "team-a"); err == nil {
		t.Fatal("WriteKubeconfig with groups but no user: no error")
	}

	load := func(path string) *kubernetes.Clientset {
		t.Helper()
		c, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			t.Fatal(err)
		}
		if c.Host != s.URL() || len(c.CAData) == 0 || c.CAFile != "" {
			t.Fatalf("%s: host %q, %d bytes of CA data, CA file %q; want %s and the CA embedded", path, c.Host, len(c.CAData), c.CAFile, s.URL())
		}
		return clientFor(t, c)
	}
	whoami := func(cs *kubernetes.Clientset) authenticationv1.UserInfo {
		t.Helper()
		r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status.UserInfo
	}

	admin := load(adminPath)
	if _, err := admin.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list namespaces as the administrator: %v", err)
	}
	if got, want := whoami(admin), whoami(clientFor(t, s.Config())); !reflect.DeepEqual(got, want) {
		t.Fatalf("administrator's kubeconfig acts as %+v, Config as %+v", got, want)
	}

	user := load(userPath)
	if _, err := user.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list namespaces as %s: %v, want Forbidden", alice, err)
	}
	got, want := whoami(user), whoami(clientFor(t, s.ConfigFor(alice, groups...)))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s's kubeconfig acts as %+v, ConfigFor as %+v", alice, got, want)
	}
	if got.Username != alice || !slices.Contains(got.Groups, "team-a") || !slices.Contains(got.Groups, "team-b") {
		t.Fatalf("%s's kubeconfig acts as %+v", alice, got)
	}
}
