package kube

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// ErrNotSynced: the Node cache has not been filled from the API server
// yet, so whether a node exists cannot be told.
var ErrNotSynced = errors.New("kube: node cache not synced")

// Nodes tells whether a node exists from a Node informer's cache: no API
// call per RPC, and a node that joins the cluster is known as soon as the
// informer sees it, without a restart. Its Exists method is an
// rdscsi.NodeLookup.
type Nodes struct {
	synced cache.InformerSynced
	lister corelisters.NodeLister
}

// NewNodes registers a Node informer with factory. The caller starts the
// factory (factory.Start) and owns its lifetime; until the informer has
// synced, Exists fails with ErrNotSynced rather than answer from an empty
// cache.
func NewNodes(factory informers.SharedInformerFactory) *Nodes {
	inf := factory.Core().V1().Nodes()
	return &Nodes{synced: inf.Informer().HasSynced, lister: inf.Lister()}
}

// Exists reports whether the node named nodeID exists. It never calls the
// API server.
func (n *Nodes) Exists(_ context.Context, nodeID string) (bool, error) {
	if !n.synced() {
		return false, ErrNotSynced
	}
	_, err := n.lister.Get(nodeID)
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("kube: node %q: %w", nodeID, err)
}
