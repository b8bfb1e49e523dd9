package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/srvlab/rds-csi/attach/kube"
	"github.com/srvlab/rds-csi/attach/kube/kubetest"
	"github.com/srvlab/rds-csi/rdscsi"
)

// The controller's service account, as a deployment runs it.
const (
	controllerNamespace = "kube-system"
	controllerSA        = "rds-csi-controller"
	controllerUser      = "system:serviceaccount:" + controllerNamespace + ":" + controllerSA
)

var controllerGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + controllerNamespace}

// The attachment gauges on /metrics.
const (
	nodeAttachmentsGauge = "rds_csi_attachment_node_attachments_active"
	migrationsGauge      = "rds_csi_migration_active_migrations"
)

// grantController binds the controller's service account to exactly
// kube.ClusterRules, cluster-wide, and kube.NamespaceRules in its
// namespace: a rule the plugin needs beyond them fails the test.
func grantController(t *testing.T, ctx context.Context, admin kubernetes.Interface) {
	t.Helper()
	subjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: controllerSA, Namespace: controllerNamespace}}
	meta := metav1.ObjectMeta{Name: controllerSA}
	rbac := admin.RbacV1()
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: meta, Rules: kube.ClusterRules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: meta, Subjects: subjects,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: controllerSA}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.Roles(controllerNamespace).Create(ctx, &rbacv1.Role{ObjectMeta: meta, Rules: kube.NamespaceRules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.RoleBindings(controllerNamespace).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta, Subjects: subjects,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: controllerSA}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createNode(t *testing.T, ctx context.Context, admin kubernetes.Interface, name string) {
	t.Helper()
	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createPV creates the PersistentVolume the external-provisioner would
// for vol: a raw block ReadWriteMany one (migratable) or an ext4
// ReadWriteOnce one, its attributes the volume context.
func createPV(t *testing.T, ctx context.Context, admin kubernetes.Interface, name string, vol *csi.Volume, block bool) {
	t.Helper()
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(vol.GetCapacityBytes(), resource.BinarySI)},
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: rdscsi.DefaultDriverName, VolumeHandle: vol.GetVolumeId(), FSType: "ext4", VolumeAttributes: vol.GetVolumeContext(),
			}},
		},
	}
	if block {
		mode := corev1.PersistentVolumeBlock
		pv.Spec.VolumeMode, pv.Spec.CSI.FSType = &mode, ""
		pv.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
	}
	if _, err := admin.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createVA creates the VolumeAttachment of pv on node, as the
// external-attacher does before it publishes, and marks it attached
// through the status subresource when attached, as it does after.
func createVA(t *testing.T, ctx context.Context, admin kubernetes.Interface, pv, node string, attached bool) *storagev1.VolumeAttachment {
	t.Helper()
	va, err := admin.StorageV1().VolumeAttachments().Create(ctx, &storagev1.VolumeAttachment{
		ObjectMeta: metav1.ObjectMeta{Name: "va-" + pv + "-" + node},
		Spec: storagev1.VolumeAttachmentSpec{
			Attacher: rdscsi.DefaultDriverName, NodeName: node,
			Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: &pv},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if attached {
		va = markAttached(t, ctx, admin, va)
	}
	return va
}

func markAttached(t *testing.T, ctx context.Context, admin kubernetes.Interface, va *storagev1.VolumeAttachment) *storagev1.VolumeAttachment {
	t.Helper()
	va.Status.Attached = true
	va, err := admin.StorageV1().VolumeAttachments().UpdateStatus(ctx, va, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return va
}

// blockCapability is a raw block volume several nodes may write: the one
// access the driver lets two nodes share during a live migration.
func blockCapability() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
	}
}

// firstScrape issues GET url until the endpoint answers and returns the
// gauges of that first answer. It starts before the plugin's metrics
// listener is bound: a connection refused is retried, a connection
// accepted but not served yet (the plugin binds early, serves once the
// attachments are loaded) waits.
func firstScrape(t *testing.T, p *proc, url string, names ...string) map[string]float64 {
	t.Helper()
	client := &http.Client{Timeout: 90 * time.Second}
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case <-p.done:
			t.Fatalf("plugin exited (%v) before /metrics answered", p.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics did not answer within 90s: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return gauges(t, url, names...)
}

// gauges reads gauges without labels from /metrics.
func gauges(t *testing.T, url string, names ...string) map[string]float64 {
	t.Helper()
	families := scrapeAll(t, url)
	out := map[string]float64{}
	for _, name := range names {
		mf, ok := families[name]
		if !ok || len(mf.GetMetric()) != 1 {
			t.Fatalf("/metrics: %s: want one series, got %v", name, mf)
		}
		out[name] = mf.GetMetric()[0].GetGauge().GetValue()
	}
	return out
}

// checkGauges compares gauges read with want.
func checkGauges(t *testing.T, what string, got, want map[string]float64) {
	t.Helper()
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %s = %v, want %v", what, name, got[name], w)
		}
	}
}

// waitGauges polls /metrics until the gauges are want.
func waitGauges(t *testing.T, url string, want map[string]float64, timeout time.Duration) {
	t.Helper()
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	deadline := time.Now().Add(timeout)
	for {
		got := gauges(t, url, names...)
		ok := true
		for name, w := range want {
			ok = ok && got[name] == w
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gauges %v after %v, want %v", got, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkClusterLogs: every stderr line is a JSON record (client-go's klog
// goes through the plugin's logger too), and none says forbidden: the
// plugin needed no rule beyond kube.ClusterRules and kube.NamespaceRules.
func checkClusterLogs(t *testing.T, p *proc) {
	t.Helper()
	out := p.stderr()
	jsonRecords(t, out)
	if strings.Contains(strings.ToLower(out), "forbidden") {
		t.Errorf("the controller was refused something by RBAC:\n%s", out)
	}
}

// The controller in cluster mode, run as a service account bound to
// exactly kube.ClusterRules and kube.NamespaceRules: it rebuilds 16
// volumes, 18 node attachments and 2 live migrations from VolumeAttachments
// before it serves, so the first answer of /metrics is already right,
// with and without leader election; then it looks nodes up in the
// cluster (an unknown node is NotFound, a node created after the start is
// known), refuses an RWO volume to a second node, clears the attachments
// of a deleted node with an Event, and releases its Lease on SIGTERM.
func TestClusterFirstScrape(t *testing.T) {
	s := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	admin, err := kubernetes.NewForConfig(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	grantController(t, ctx, admin)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := s.WriteKubeconfig(kubeconfig, controllerUser, controllerGroups...); err != nil {
		t.Fatal(err)
	}
	nodes := []string{"node-1", "node-2", "node-3"}
	for _, n := range nodes {
		createNode(t, ctx, admin, n)
	}
	sock := filepath.Join(dir, "csi.sock")
	args := func(extra ...string) []string {
		return append([]string{
			"--simulate", "--simulate-dir", filepath.Join(dir, "sim"), // the fake's disks outlive each process
			"--mode", "controller",
			"--endpoint", "unix://" + sock,
			"--cluster", "on", "--kubeconfig", kubeconfig,
			"--log-format", "json",
		}, extra...)
	}

	// 1. The volumes, created through the plugin on the simulated RDS
	// (publish looks them up there) while the cluster has no attachment.
	p := startServing(t, nil, args("--metrics-address", "127.0.0.1:0")...)
	checkGauges(t, "empty cluster", gauges(t, p.metricsURL, activeGauge, nodeAttachmentsGauge), map[string]float64{activeGauge: 0, nodeAttachmentsGauge: 0})
	ctrl := csi.NewControllerClient(p.conn)
	var rwo, vms []*csi.Volume
	for i := range 14 {
		rwo = append(rwo, createVolume(t, ctrl, fmt.Sprintf("cluster-rwo-%d", i)))
	}
	for i := range 2 {
		resp, err := ctrl.CreateVolume(rpcCtx(t), &csi.CreateVolumeRequest{
			Name:               fmt.Sprintf("cluster-vm-%d", i),
			CapacityRange:      &csi.CapacityRange{RequiredBytes: 32 << 20},
			VolumeCapabilities: []*csi.VolumeCapability{blockCapability()},
			Parameters:         map[string]string{rdscsi.ParamMigrationTimeout: "600"},
		})
		if err != nil {
			t.Fatalf("CreateVolume of a migratable volume: %v", err)
		}
		if got := resp.GetVolume().GetVolumeContext()[rdscsi.ParamMigrationTimeout]; got != "600" {
			t.Fatalf("volume context %s = %q, want 600", rdscsi.ParamMigrationTimeout, got)
		}
		vms = append(vms, resp.GetVolume())
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	checkClusterLogs(t, p.proc)

	// 2. What the external-provisioner and -attacher leave in the
	// cluster: 14 RWO volumes on one node each, 2 in a live migration.
	pvOf := map[string]string{}
	published := map[string][]string{}
	for i, v := range rwo {
		pv := fmt.Sprintf("pv-rwo-%d", i)
		createPV(t, ctx, admin, pv, v, false)
		createVA(t, ctx, admin, pv, nodes[i%3], true)
		pvOf[v.GetVolumeId()], published[v.GetVolumeId()] = pv, []string{nodes[i%3]}
	}
	for i, v := range vms {
		pv := fmt.Sprintf("pv-vm-%d", i)
		createPV(t, ctx, admin, pv, v, true)
		createVA(t, ctx, admin, pv, nodes[0], true)
		createVA(t, ctx, admin, pv, nodes[1], true)
		pvOf[v.GetVolumeId()], published[v.GetVolumeId()] = pv, []string{nodes[0], nodes[1]}
	}
	want := map[string]float64{activeGauge: 16, nodeAttachmentsGauge: 18, migrationsGauge: 2}
	names := []string{activeGauge, nodeAttachmentsGauge, migrationsGauge}

	// 3. Without leader election the replica leads at once: the very
	// first answer of /metrics, asked for from before the listener is
	// bound, is the cluster's.
	t.Run("first scrape without leader election", func(t *testing.T) {
		addr := closedPort(t)
		pr := startPlugin(t, nil, args("--metrics-address", addr)...)
		checkGauges(t, "first scrape", firstScrape(t, pr, "http://"+addr+"/metrics", names...), want)
		pr.waitLog("rds-csi-plugin: serving", 30*time.Second)
		pr.signal(syscall.SIGTERM)
		if code := pr.wait(10 * time.Second); code != 0 {
			t.Fatalf("exit code after SIGTERM = %d, want 0", code)
		}
		checkClusterLogs(t, pr)
	})

	// 4. With leader election: once this replica leads, the first scrape
	// is right; then the RPCs.
	const identity = "controller-0"
	p = startServing(t, nil, args("--metrics-address", "127.0.0.1:0",
		"--leader-election", "--leader-election-namespace", controllerNamespace, "--leader-election-identity", identity,
		"--leader-election-lease-duration", "4s", "--leader-election-renew-deadline", "3s", "--leader-election-retry-period", "1s",
		"--reconcile-grace", "0s", "--reconcile-interval", "500ms")...)
	truth := p.waitLog("rds-csi-plugin: attachment truth: cluster", time.Second)
	lease := controllerNamespace + "/rds-csi-srvlab-io-controller"
	if truth["leader_election"] != "lease "+lease+" as "+identity || truth["driver"] != rdscsi.DefaultDriverName {
		t.Errorf("attachment truth log: %v", truth)
	}
	p.waitLog("kube: leading", 30*time.Second)
	checkGauges(t, "first scrape after leading", gauges(t, p.metricsURL, names...), want)
	ctrl = csi.NewControllerClient(p.conn)
	if got := publishedNodes(t, ctrl); len(got) != len(published) {
		t.Errorf("ListVolumes lists %d volumes, want %d", len(got), len(published))
	} else {
		for vol, nodes := range published {
			if !slices.Equal(got[vol], nodes) {
				t.Errorf("ListVolumes: volume %s published to %v, want %v", vol, got[vol], nodes)
			}
		}
	}

	// A node the cluster does not have.
	if _, err := publish(t, ctrl, rwo[0], "node-ghost"); status.Code(err) != codes.NotFound {
		t.Errorf("publish to a node that does not exist: got %v, want NotFound", err)
	}
	// A node that joins after the start, with a new volume the attacher
	// publishes there: no restart needed. The Node and VolumeAttachment
	// informers are separate watches, so the controller may see the
	// VolumeAttachment a moment before the Node; the attacher retries a
	// NotFound, and so does this test, briefly.
	createNode(t, ctx, admin, "node-4")
	late := createVolume(t, ctrl, "cluster-late")
	createPV(t, ctx, admin, "pv-late", late, false)
	va := createVA(t, ctx, admin, "pv-late", "node-4", false)
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, err := publish(t, ctrl, late, "node-4")
		if err == nil {
			break
		}
		if status.Code(err) != codes.NotFound || time.Now().After(deadline) {
			t.Fatalf("publish to a node created after the start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	markAttached(t, ctx, admin, va)
	want = map[string]float64{activeGauge: 17, nodeAttachmentsGauge: 19, migrationsGauge: 2}
	checkGauges(t, "after the late publish", gauges(t, p.metricsURL, names...), want)
	// An RWO volume asked for on a second node (the attacher created its
	// VolumeAttachment): refused, whatever the cluster says.
	createVA(t, ctx, admin, pvOf[rwo[0].GetVolumeId()], nodes[1], false)
	if _, err := publish(t, ctrl, rwo[0], nodes[1]); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("publish of an RWO volume to a second node: got %v, want FailedPrecondition", err)
	}
	// A republish to the node that holds it is a retry, and succeeds.
	if _, err := publish(t, ctrl, rwo[0], nodes[0]); err != nil {
		t.Errorf("republish to the node holding the volume: %v", err)
	}

	// A deleted node's attachments are cleared (--reconcile-grace 0s),
	// with an Event on each PersistentVolume: the RBAC rule for Events is
	// needed too. node-3 holds rwo[2], [5], [8] and [11].
	if err := admin.CoreV1().Nodes().Delete(ctx, nodes[2], metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGauges(t, p.metricsURL, map[string]float64{activeGauge: 13, nodeAttachmentsGauge: 15, migrationsGauge: 2}, 30*time.Second)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		evs, err := admin.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "reason=AttachmentReconciled"})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs.Items) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d AttachmentReconciled Events after 30s, want 4: %v", len(evs.Items), evs.Items)
		}
	}

	// The Lease is this replica's while it serves, released on SIGTERM.
	holder := func() string {
		l, err := admin.CoordinationV1().Leases(controllerNamespace).Get(ctx, "rds-csi-srvlab-io-controller", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	if h := holder(); h != identity {
		t.Errorf("Lease %s held by %q, want %q", lease, h, identity)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	if h := holder(); h != "" {
		t.Errorf("Lease %s still held by %q after the controller stopped", lease, h)
	}
	checkClusterLogs(t, p.proc)
}

// An API server that cannot be reached at start: the controller says so,
// retries, and waits, neither exiting (a crash loop brings the API server
// no sooner) nor serving (no socket, no /metrics answer) without the
// cluster's truth; SIGTERM still ends it at once, with exit status 0.
func TestClusterAPIServerUnreachableAtStart(t *testing.T) {
	dir := t.TempDir()
	api := closedPort(t)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters:
- name: down
  cluster:
    server: https://`+api+`
    insecure-skip-tls-verify: true
users:
- name: controller
  user:
    token: unused
contexts:
- name: down
  context:
    cluster: down
    user: controller
current-context: down
`), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "csi.sock")
	metricsAddr := closedPort(t)
	start := time.Now()
	p := startPlugin(t, nil, "--simulate", "--mode", "controller", "--endpoint", "unix://"+sock,
		"--cluster", "on", "--kubeconfig", kubeconfig, "--metrics-address", metricsAddr, "--log-format", "json")

	p.waitLog("rds-csi-plugin: waiting for the Kubernetes API server before serving", 30*time.Second)
	warn := p.waitLog("kube: still waiting for the API server before serving", 5*time.Second)
	if warn["level"] != "WARN" || !strings.Contains(fmt.Sprint(warn["err"]), api) {
		t.Errorf("warning %v: want level WARN and an error naming %s", warn, api)
	}
	select {
	case <-p.done:
		t.Fatalf("plugin exited (%v) while the API server was unreachable", p.err)
	case <-time.After(5*time.Second - time.Since(start)):
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("gRPC socket %s exists before the attachment state was loaded (%v)", sock, err)
	}
	// The metrics listener is bound (a taken port is a startup error)
	// but not served.
	client := &http.Client{Timeout: 500 * time.Millisecond}
	if resp, err := client.Get("http://" + metricsAddr + "/metrics"); err == nil {
		resp.Body.Close()
		t.Errorf("/metrics answered %s before the attachment state was loaded", resp.Status)
	} else if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
		t.Errorf("/metrics: %v, want a timeout (bound, not served)", err)
	}
	if strings.Contains(p.stderr(), "rds-csi-plugin: serving") {
		t.Error("serving without the cluster")
	}

	sigAt := time.Now()
	p.signal(syscall.SIGTERM)
	if code := p.wait(5*time.Second - time.Since(sigAt)); code != 0 {
		t.Fatalf("exit code after SIGTERM during startup = %d, want 0", code)
	}
	out := p.stderr()
	jsonRecords(t, strings.TrimSuffix(strings.TrimSpace(out), "\n"+lastLine(out)))
	if l := lastLine(out); !strings.HasPrefix(l, "rds-csi-plugin: stopped during startup: waiting for the Kubernetes API server") {
		t.Errorf("last line %q, want the startup cut short", l)
	}
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
