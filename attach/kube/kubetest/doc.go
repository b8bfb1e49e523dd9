// Package kubetest starts a real kube-apiserver backed by a real etcd on
// loopback for tests, as controller-runtime's envtest does, and hands out
// a *rest.Config for it.
//
// The fakes of client-go prove little for code that relies on the API
// server's behaviour: they assign no resourceVersion (a stale update
// succeeds), set no creationTimestamp, ignore field selectors and store
// status on a plain Update. A real server does all of that, so leader
// election, optimistic concurrency and timestamp-ordered rebuilds can be
// tested.
//
// The binaries are not built by the tests. .ci/kube-tools builds etcd and
// kube-apiserver from the Go module proxy into a cache directory keyed by
// version and prints that directory; Start finds them through the
// RDS_CSI_KUBE_ASSETS environment variable (a directory holding both), or
// in that default cache directory. Without them, Start skips the test
// with the command that builds them, unless CI is set, where missing
// binaries fail the test.
//
// The server runs with RBAC authorization, a self-signed serving
// certificate, and token authentication: Config authenticates as an
// administrator (group system:masters), and ConfigFor as any user with
// any groups, so that a test can run with exactly the permissions a
// deployment grants. WriteKubeconfig writes either identity to a
// kubeconfig file, for a binary the test runs as a separate process.
//
// StopAPIServer and StartAPIServer stop the API server and start it
// again on the same address over the same etcd, so that a test can see
// how code copes with the server going away and coming back with its
// data.
package kubetest
