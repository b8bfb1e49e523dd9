package kube_test

import (
	"context"
	"testing"
	"time"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/srvlab/rds-csi/attach/kube/kubetest"
)

// startCluster starts a real API server for t and returns it, a context
// that ends with t (or after two minutes), and an administrator's client.
func startCluster(t testing.TB) (*kubetest.Server, context.Context, kubernetes.Interface) {
	t.Helper()
	s := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cs, err := kubernetes.NewForConfig(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	return s, ctx, cs
}

// startInformers starts factory, waits until every informer it holds has
// synced, and stops them when t ends.
func startInformers(t testing.TB, ctx context.Context, factory informers.SharedInformerFactory) {
	t.Helper()
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); factory.Shutdown() })
	factory.Start(stop)
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("%v did not sync", typ)
		}
	}
}
