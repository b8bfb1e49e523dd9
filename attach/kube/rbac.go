package kube

import rbacv1 "k8s.io/api/rbac/v1"

// ClusterRules are the least cluster-wide permissions the controller's
// cluster features need: read the VolumeAttachments (attachment truth),
// the PersistentVolumes they name (volume ID, access, migration timeout)
// and the Nodes (node lookup), and post Events on PersistentVolumes. A
// deployment grants exactly these (with the sidecars' own rules); tests
// run the controller's code as a service account bound to them, so a
// missing permission fails a test, not a cluster.
var ClusterRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"volumeattachments"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"persistentvolumes"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
}

// NamespaceRules are the permissions the controller needs in its own
// namespace: the Lease of its leader election.
var NamespaceRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
}
