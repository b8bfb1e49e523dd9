// Package kube will keep attach's state in step with the Kubernetes API:
// VolumeAttachments, PersistentVolumes and Nodes are the distributed
// truth of who is attached where, and a controller rebuilds from them
// before it serves. It is a module of its own so that a user of the root
// module never downloads client-go.
//
// So far: Attachments and Rebuild turn the VolumeAttachments of a driver
// and the PersistentVolumes they name into attach state, every node of a
// volume and a running migration's start and timeout included, ready for
// attach.Manager.Replace; a contradiction (an RWO volume on two nodes, a
// missing PersistentVolume) fails the rebuild instead of being guessed
// around. Nodes answers rdscsi.NodeLookup from a Node informer's cache:
// no API call per RPC, and a new node needs no restart. ClusterRules and
// NamespaceRules are the least RBAC rules the controller needs; a test
// runs the code above as a service account bound to exactly them.
// kubetest starts the real kube-apiserver and etcd the tests run against.
// Keeping the attachment state in step through informers, reconcile of
// deleted nodes, Events and failover between replicas are to come.
package kube
