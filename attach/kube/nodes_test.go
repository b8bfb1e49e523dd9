package kube_test

import (
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/srvlab/rds-csi/attach/kube"
	"github.com/srvlab/rds-csi/rdscsi"
)

// countingTransport counts the requests a client sends.
type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// TestNodesFromInformer: a node lookup answers from the informer's cache
// (no request per lookup), learns a new node without a restart, forgets a
// deleted one, and refuses to answer before the cache has synced.
func TestNodesFromInformer(t *testing.T) {
	s, ctx, admin := startCluster(t)
	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	var requests atomic.Int64
	cfg := s.Config()
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt, &requests} }
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	factory := informers.NewSharedInformerFactory(cs, 0)
	nodes := kube.NewNodes(factory)
	var lookup rdscsi.NodeLookup = nodes.Exists // the seam it plugs into

	if _, err := lookup(ctx, "node-1"); !errors.Is(err, kube.ErrNotSynced) {
		t.Fatalf("lookup before sync: %v, want ErrNotSynced", err)
	}
	events := make(chan string, 8)
	if _, err := factory.Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { events <- "add" },
		DeleteFunc: func(any) { events <- "delete" },
	}); err != nil {
		t.Fatal(err)
	}
	startInformers(t, ctx, factory)
	<-events // node-1

	before := requests.Load()
	for range 100 {
		if ok, err := lookup(ctx, "node-1"); !ok || err != nil {
			t.Fatalf("node-1: %v, %v", ok, err)
		}
		if ok, err := lookup(ctx, "node-2"); ok || err != nil {
			t.Fatalf("node-2 before it exists: %v, %v", ok, err)
		}
	}
	if n := requests.Load() - before; n != 0 {
		t.Errorf("200 lookups sent %d requests, want 0", n)
	}

	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-2"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ev := <-events; ev != "add" {
		t.Fatalf("event %s, want add", ev)
	}
	if ok, err := lookup(ctx, "node-2"); !ok || err != nil {
		t.Fatalf("node-2 after it joined: %v, %v", ok, err)
	}
	if err := admin.CoreV1().Nodes().Delete(ctx, "node-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if ev := <-events; ev != "delete" {
		t.Fatalf("event %s, want delete", ev)
	}
	if ok, err := lookup(ctx, "node-1"); ok || err != nil {
		t.Fatalf("node-1 after deletion: %v, %v", ok, err)
	}
}
