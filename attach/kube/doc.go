// Package kube will keep attach's state in step with the Kubernetes API:
// VolumeAttachments, PersistentVolumes and Nodes are the distributed
// truth of who is attached where, and a controller rebuilds from them
// before it serves. It is a module of its own so that a user of the root
// module never downloads client-go.
//
// So far it holds only kubetest, which starts the real kube-apiserver and
// etcd that its tests run against.
package kube
