// Package kube keeps attach's state in step with the Kubernetes API:
// VolumeAttachments, PersistentVolumes and Nodes are the distributed
// truth of who is attached where. It is a module of its own so that a
// user of the root module never downloads client-go.
//
// Cluster is what a cluster-backed controller serves from. It rebuilds an
// attach.Manager from the cluster before the controller serves, keeps it
// in step through informers (no API call per RPC), answers node lookups
// from a Node informer, clears the attachments of deleted nodes after a
// grace period, posts Events on PersistentVolumes for migrations and
// reconciles, and elects through a Lease the replica that reports
// metrics and posts Events; every replica answers RPCs (see Cluster for
// why, and for how claims keep an RWO volume on one node).
//
// Attachments and Rebuild turn the VolumeAttachments of a driver and the
// PersistentVolumes they name into attach state, every node of a volume
// and a running migration's start and timeout included; a contradiction
// (an RWO volume attached to two nodes, a missing PersistentVolume)
// fails the rebuild instead of being guessed around. Nodes answers
// rdscsi.NodeLookup from a Node informer's cache. ClusterRules and
// NamespaceRules are the least RBAC rules the controller needs; tests run
// the code as a service account bound to exactly them. kubetest starts
// the real kube-apiserver and etcd the tests run against.
//
// # Failover and the CSI sidecars
//
// Each sidecar (provisioner, attacher, resizer, snapshotter) elects its
// own leader through its own Lease, so in a two-replica Deployment the
// attacher's leader and the provisioner's leader may sit in different
// pods, and each calls the plugin in its own pod. That rules out a plugin
// that serves only while it holds a Lease of its own: the attacher's
// leader could be paired with a plugin that refuses. So every replica
// mirrors the same truth from the API server and answers every call, and
// the exclusion of an RWO volume does not depend on which replica is
// called (claims are applied in the API server's order). The plugin's own
// Lease only picks who does what must happen once: Events, attachment
// counters and gauges. When the pod holding it dies, another replica
// takes over within the lease duration, having served RPCs all along.
package kube
