package kubetest_test

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/srvlab/rds-csi/attach/kube/kubetest"
)

// A test starts its own API server, talks to it as an administrator, and
// as a service account with only the rights RBAC gives it. (Not run as an
// example: it needs the binaries .ci/kube-tools builds, and a *testing.T.)
func ExampleStart() {
	var t *testing.T // the test's own
	s := kubetest.Start(t)
	admin, _ := kubernetes.NewForConfig(s.Config())
	nodes, _ := admin.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	fmt.Println(len(nodes.Items))

	controller, _ := kubernetes.NewForConfig(s.ConfigFor(
		"system:serviceaccount:kube-system:rds-csi-controller",
		"system:serviceaccounts", "system:serviceaccounts:kube-system"))
	_, err := controller.StorageV1().VolumeAttachments().List(context.Background(), metav1.ListOptions{})
	fmt.Println(err) // Forbidden until a ClusterRoleBinding grants it
}
