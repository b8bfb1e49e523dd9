// Package helm_test checks the rds-csi Helm chart in ./rds-csi and the plain
// manifests rendered from it in ../kubernetes: helm lint and template,
// the values schema, server-side dry-run apply with strict field
// validation against a real kube-apiserver, the plugin's own flag parser
// on the arguments the chart renders, and the plugin's RBAC rules.
package helm_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	volumesnapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"golang.org/x/crypto/ssh"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"

	"github.com/srvlab/rds-csi/attach/kube"
	"github.com/srvlab/rds-csi/attach/kube/kubetest"
	"github.com/srvlab/rds-csi/internal/testutil"
)

// HelmVersion is the helm .ci/helm-tool builds; keep them in step.
const HelmVersion = "v3.22.0"

// kubeVersion is the Kubernetes version charts are rendered for: the
// API server the tests run.
const kubeVersion = "1.37.2"

const (
	chartDir      = "rds-csi"
	release       = "rds-csi"
	namespace     = "rds-csi"
	manifestsFile = "../kubernetes/rds-csi.yaml"
	manifestsVals = "../kubernetes/values.yaml"
)

var update = flag.Bool("update", false, "rewrite "+manifestsFile+" from the chart")

var pluginBin string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testutil.MainWithBinary(m, "../rds-csi-plugin", "rds-csi-plugin", false, &pluginBin))
}

// helmBin returns helm: $RDS_CSI_HELM, or where .ci/helm-tool builds it.
// Without it the test is skipped, saying how to build it, unless CI is set.
func helmBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("RDS_CSI_HELM")
	if bin == "" {
		cache, err := os.UserCacheDir()
		if err == nil {
			bin = filepath.Join(cache, "rds-csi", "helm-"+HelmVersion, "helm")
		}
	}
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("helm %s not found (%v); build it with: bash .ci/helm-tool (or set RDS_CSI_HELM)", HelmVersion, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// variants are the value sets every test renders, as helm flags: each
// adds to the values a user must give (userValues), but "existing Secret",
// which names a Secret instead of giving the keys.
var variants = map[string][]string{
	"defaults":        nil,
	"no snapshots":    {"--set", "snapshots.enabled=false"},
	"existing Secret": {"--set", "rds.existingSecret=rds-credentials"},
	"OTLP":            {"--set", "otlp.enabled=true", "--set", "otlp.endpoint=http://otel-collector.monitoring:4318"},
	"monitoring":      {"--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true"},
}

// testHostKey is the host key the tests pin: a throwaway.
var testHostKey = sync.OnceValue(func() string {
	host, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	pub, err := ssh.NewPublicKey(host)
	if err != nil {
		panic(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
})

// userValues are the values a user must give: the RDS address, its pinned
// host key and the SSH key (a throwaway pair written to files, as a user
// passes them with --set-file), or with keys false only the address.
func userValues(t *testing.T, keys bool) []string {
	t.Helper()
	args := []string{"--set", "rds.address=192.0.2.10"}
	if !keys {
		return args
	}
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile, hostFile := filepath.Join(dir, "id"), filepath.Join(dir, "host.pub")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hostFile, []byte(testHostKey()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return append(args, "--set-file", "rds.sshPrivateKey="+keyFile, "--set-file", "rds.hostKey="+hostFile)
}

// valuesFor returns the helm flags of a variant with the user's values.
func valuesFor(t *testing.T, variant string) []string {
	return append(userValues(t, variant != "existing Secret"), variants[variant]...)
}

// helm runs helm with args and returns its stdout, or its stderr as the
// error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helmBin(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// No repository or cache of the user's: the chart has no dependencies.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s", args[0], err, stderr.String())
	}
	return stdout.String(), nil
}

// render runs helm template with flags.
func render(t *testing.T, flags ...string) ([]*unstructured.Unstructured, string) {
	t.Helper()
	out, err := helm(t, append([]string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}, flags...)...)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, out), out
}

func decode(t *testing.T, manifests string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	r := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	for {
		u := &unstructured.Unstructured{}
		err := r.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("decoding the rendered manifests: %v", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

func find(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func typed[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	v := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, v, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return v
}

func TestLint(t *testing.T) {
	for name := range variants {
		t.Run(name, func(t *testing.T) {
			if out, err := helm(t, append([]string{"lint", "--strict", chartDir, "--namespace", namespace, "--kube-version", kubeVersion},
				valuesFor(t, name)...)...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// TestSchemaRejects: a wrong value fails at install, in helm, not in a pod.
func TestSchemaRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		flags []string
		want  string
	}{
		"no host key":          {nil, "hostKey"},
		"no RDS address":       {[]string{"--set", "rds.address="}, "address"},
		"negative replicas":    {[]string{"--set", "controller.replicas=-1"}, "replicas"},
		"zero replicas":        {[]string{"--set", "controller.replicas=0"}, "replicas"},
		"replicas not integer": {[]string{"--set-string", "controller.replicas=two"}, "replicas"},
		"wrong log level":      {[]string{"--set", "logLevel=loud"}, "logLevel"},
		"wrong binding mode":   {[]string{"--set", "storageClasses.ext4.volumeBindingMode=Sometimes"}, "volumeBindingMode"},
		"wrong pull policy":    {[]string{"--set", "image.pullPolicy=Sometimes"}, "pullPolicy"},
		"wrong OTLP protocol":  {[]string{"--set", "otlp.enabled=true", "--set", "otlp.protocol=udp"}, "protocol"},
		"unknown key":          {[]string{"--set", "controller.replicaz=2"}, "replicaz"},
		"boolean as string":    {[]string{"--set-string", "snapshots.enabled=false"}, "enabled"},
	} {
		t.Run(name, func(t *testing.T) {
			vals := userValues(t, true)
			if name == "no host key" {
				i := slices.IndexFunc(vals, func(v string) bool { return strings.HasPrefix(v, "rds.hostKey=") })
				vals = slices.Delete(vals, i-1, i+1)
			}
			args := append([]string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}, vals...)
			_, err := helm(t, append(args, tc.flags...)...)
			if err == nil {
				t.Fatal("helm template accepted it")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("the error does not name %q:\n%v", tc.want, err)
			}
		})
	}
}

// TestRendered checks what each variant renders against what the
// deployment needs.
func TestRendered(t *testing.T) {
	for name := range variants {
		t.Run(name, func(t *testing.T) {
			objs, _ := render(t, valuesFor(t, name)...)
			deps := find(objs, "Deployment")
			if len(deps) != 1 {
				t.Fatalf("%d Deployments, want 1", len(deps))
			}
			dep := typed[appsv1.Deployment](t, deps[0])
			if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
				t.Errorf("controller replicas %v, want 2", dep.Spec.Replicas)
			}
			if len(find(objs, "PodDisruptionBudget")) != 1 {
				t.Error("no PodDisruptionBudget for the controller")
			}
			want := map[string]string{
				"csi-provisioner": "v6.3.0", "csi-attacher": "v4.12.0", "csi-resizer": "v2.2.1",
				"csi-snapshotter": "v8.6.0", "livenessprobe": "v2.19.0",
			}
			if name == "no snapshots" {
				delete(want, "csi-snapshotter")
			}
			images := map[string]corev1.Container{}
			for _, c := range dep.Spec.Template.Spec.Containers {
				images[imageName(c.Image)] = c
			}
			for img, tag := range want {
				c, ok := images[img]
				if !ok {
					t.Errorf("the controller has no %s", img)
					continue
				}
				if !strings.HasSuffix(c.Image, ":"+tag) {
					t.Errorf("%s image %s, want tag %s", img, c.Image, tag)
				}
				if img != "livenessprobe" {
					if !slices.Contains(c.Args, "--leader-election") && !slices.Contains(c.Args, "--leader-election=true") {
						t.Errorf("%s runs without leader election: %v", img, c.Args)
					}
					if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil {
						t.Errorf("%s has no HTTP liveness probe", img)
					}
				}
			}
			if _, ok := images["csi-snapshotter"]; ok && name == "no snapshots" {
				t.Error("snapshots disabled, but the snapshotter runs")
			}
			if n := len(find(objs, "VolumeSnapshotClass")); (n == 1) == (name == "no snapshots") {
				t.Errorf("%d VolumeSnapshotClasses", n)
			}
			if n := len(find(objs, "Secret")); (n == 1) == (name == "existing Secret") {
				t.Errorf("%d Secrets with rds.existingSecret %v", n, name == "existing Secret")
			}

			dss := find(objs, "DaemonSet")
			if len(dss) != 1 {
				t.Fatalf("%d DaemonSets, want 1", len(dss))
			}
			ds := typed[appsv1.DaemonSet](t, dss[0])
			if !ds.Spec.Template.Spec.HostPID {
				t.Error("the node plugin does not run with hostPID")
			}
			var plugin *corev1.Container
			for i, c := range ds.Spec.Template.Spec.Containers {
				if slices.Contains(c.Args, "--mode=node") {
					plugin = &ds.Spec.Template.Spec.Containers[i]
				}
				if imageName(c.Image) == "csi-node-driver-registrar" && !strings.HasSuffix(c.Image, ":v2.17.0") {
					t.Errorf("registrar image %s, want v2.17.0", c.Image)
				}
			}
			if plugin == nil {
				t.Fatal("no node plugin container (--mode=node)")
			}
			if plugin.SecurityContext == nil || plugin.SecurityContext.Privileged == nil || !*plugin.SecurityContext.Privileged {
				t.Error("the node plugin is not privileged")
			}
			bidirectional := false
			for _, m := range plugin.VolumeMounts {
				if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional && strings.Contains(m.MountPath, "kubelet") {
					bidirectional = true
				}
			}
			if !bidirectional {
				t.Error("the kubelet directory is not mounted with Bidirectional propagation")
			}
			nodeID := false
			for _, e := range plugin.Env {
				if e.Name == "RDS_CSI_NODE_ID" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
					nodeID = true
				}
			}
			if !nodeID {
				t.Error("the node ID does not come from spec.nodeName")
			}
			if n := len(find(objs, "ServiceMonitor")) + len(find(objs, "PrometheusRule")); (n == 2) != (name == "monitoring") {
				t.Errorf("%d ServiceMonitors and PrometheusRules", n)
			}
		})
	}
}

func imageName(image string) string {
	name, _, _ := strings.Cut(image[strings.LastIndex(image, "/")+1:], ":")
	return name
}

// TestPluginRBAC: the plugin's own rules, as the chart renders them, are
// exactly kube.ClusterRules and kube.NamespaceRules, the rules the
// impersonation tests of attach/kube and the plugin prove enough; and the
// controller's service account is bound to them.
func TestPluginRBAC(t *testing.T) {
	objs, _ := render(t, valuesFor(t, "defaults")...)
	var cluster, leases []rbacv1.PolicyRule
	var roles []string
	for _, u := range find(objs, "ClusterRole") {
		if strings.HasSuffix(u.GetName(), "-plugin") {
			cluster = typed[rbacv1.ClusterRole](t, u).Rules
			roles = append(roles, u.GetName())
		}
	}
	for _, u := range find(objs, "Role") {
		if strings.HasSuffix(u.GetName(), "-plugin-leases") {
			leases = typed[rbacv1.Role](t, u).Rules
			roles = append(roles, u.GetName())
		}
	}
	if !equalRules(cluster, kube.ClusterRules) {
		t.Errorf("the chart's plugin ClusterRole\n%v\nis not kube.ClusterRules\n%v", cluster, kube.ClusterRules)
	}
	if !equalRules(leases, kube.NamespaceRules) {
		t.Errorf("the chart's plugin Role\n%v\nis not kube.NamespaceRules\n%v", leases, kube.NamespaceRules)
	}
	dep := typed[appsv1.Deployment](t, find(objs, "Deployment")[0])
	sa := dep.Spec.Template.Spec.ServiceAccountName
	bound := map[string]bool{}
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		for _, u := range find(objs, kind) {
			b := typed[rbacv1.RoleBinding](t, u)
			for _, s := range b.Subjects {
				if s.Kind == rbacv1.ServiceAccountKind && s.Name == sa && s.Namespace == namespace {
					bound[b.RoleRef.Name] = true
				}
			}
		}
	}
	for _, r := range roles {
		if !bound[r] {
			t.Errorf("the controller's service account %q is not bound to %s", sa, r)
		}
	}
	if len(roles) != 2 {
		t.Errorf("plugin roles %v, want a ClusterRole *-plugin and a Role *-plugin-leases", roles)
	}
}

func equalRules(a, b []rbacv1.PolicyRule) bool {
	norm := func(rs []rbacv1.PolicyRule) []string {
		var out []string
		for _, r := range rs {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						out = append(out, g+"/"+res+"/"+v)
					}
				}
			}
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(norm(a), norm(b))
}

// TestPluginArgs runs the plugin binary's own flag parser (--check-config)
// on the arguments and environment the chart gives each plugin container,
// as the pod would see them, so a renamed or misspelt flag fails here.
func TestPluginArgs(t *testing.T) {
	for name := range variants {
		t.Run(name, func(t *testing.T) {
			objs, _ := render(t, valuesFor(t, name)...)
			var pods []corev1.PodSpec
			for _, u := range find(objs, "Deployment") {
				pods = append(pods, typed[appsv1.Deployment](t, u).Spec.Template.Spec)
			}
			for _, u := range find(objs, "DaemonSet") {
				pods = append(pods, typed[appsv1.DaemonSet](t, u).Spec.Template.Spec)
			}
			checked := 0
			for _, pod := range pods {
				for _, c := range pod.Containers {
					if imageName(c.Image) != "rds-csi-plugin" {
						continue
					}
					checked++
					env := []string{"KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443", "HOME=/", "PATH=/usr/bin:/bin"}
					for _, e := range c.Env {
						v := e.Value
						if e.ValueFrom != nil {
							v = "from-" + e.Name // a Secret, the downward API
							if e.Name == "RDS_CSI_RDS_HOST_KEY" {
								v = testHostKey()
							}
						}
						env = append(env, e.Name+"="+expand(v, c.Env))
					}
					args := append(slices.Clone(c.Command[min(len(c.Command), 1):]), c.Args...)
					for i := range args {
						args[i] = expand(args[i], c.Env)
					}
					cmd := exec.Command(pluginBin, append(args, "--check-config")...)
					cmd.Env = env
					out, err := cmd.CombinedOutput()
					if err != nil || strings.TrimSpace(string(out)) != "configuration ok" {
						t.Errorf("the plugin refuses %v: %v\n%s", args, err, out)
					}
				}
			}
			if checked != 2 {
				t.Errorf("%d plugin containers checked, want 2 (controller and node)", checked)
			}
		})
	}
}

// expand replaces $(VAR) references to the container's literal
// environment, as the kubelet does.
func expand(s string, env []corev1.EnvVar) string {
	for _, e := range env {
		v := e.Value
		if e.ValueFrom != nil {
			v = "from-" + e.Name
		}
		s = strings.ReplaceAll(s, "$("+e.Name+")", v)
	}
	return s
}

// TestManifests: the plain manifests are what the chart renders with
// ../kubernetes/values.yaml; go test ./examples/helm -run TestManifests
// -update rewrites them.
func TestManifests(t *testing.T) {
	out, err := helm(t, "template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion, "--values", manifestsVals)
	if err != nil {
		t.Fatal(err)
	}
	header := "# Rendered from examples/helm/rds-csi with examples/kubernetes/values.yaml; do not edit.\n" +
		"# Regenerate: go test ./examples/helm -run TestManifests -update\n"
	want := header + out
	if *update {
		if err := os.WriteFile(manifestsFile, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(manifestsFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s has drifted from the chart; regenerate it with: go test ./examples/helm -run TestManifests -update", manifestsFile)
	}
}

// TestServerSideDryRun applies every object each variant renders, and the
// plain manifests, to a real API server with server-side apply, dry run
// and strict field validation: an unknown or misplaced field fails here.
// The snapshot CRDs come from the module cache; the Prometheus operator's
// kinds are skipped, with the reason printed, since no definition of them
// ships with a module this project uses.
func TestServerSideDryRun(t *testing.T) {
	s := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs, err := kubernetes.NewForConfig(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	applyCRDs(t, ctx, dyn, cs)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(s.Config())))
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sets := map[string][]*unstructured.Unstructured{}
	for name := range variants {
		sets[name], _ = render(t, valuesFor(t, name)...)
	}
	raw, err := os.ReadFile(manifestsFile)
	if err != nil {
		t.Fatal(err)
	}
	sets["plain manifests"] = decode(t, string(raw))
	for name, objs := range sets {
		for _, o := range objs {
			gvk := o.GroupVersionKind()
			if gvk.Group == "monitoring.coreos.com" {
				t.Logf("%s: not applied: %s %s (no CRD for the Prometheus operator's kinds here)", name, gvk.Kind, o.GetName())
				continue
			}
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Errorf("%s: %s %s: %v", name, gvk, o.GetName(), err)
				continue
			}
			var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
			if m.Scope.Name() == meta.RESTScopeNameNamespace {
				ns := o.GetNamespace()
				if ns == "" {
					ns = namespace
				}
				ri = dyn.Resource(m.Resource).Namespace(ns)
			}
			body, err := o.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
				FieldManager: "chart-test", DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict",
			}); err != nil {
				t.Errorf("%s: %s %s refused: %v", name, gvk.Kind, o.GetName(), err)
			}
		}
	}
}

var apiextensionsCRDs = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// applyCRDs creates the VolumeSnapshot CRDs of the external-snapshotter
// client module (the version go.mod requires) and waits until they serve.
func applyCRDs(t *testing.T, ctx context.Context, dyn dynamic.Interface, cs kubernetes.Interface) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/kubernetes-csi/external-snapshotter/client/v8").Output()
	if err != nil {
		t.Fatalf("locating the external-snapshotter client module: %v", err)
	}
	files, err := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "snapshot.storage.k8s.io_*.yaml"))
	if err != nil || len(files) != 3 {
		t.Fatalf("snapshot CRDs: %v, %v", files, err)
	}
	crds := dyn.Resource(apiextensionsCRDs)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range decode(t, string(raw)) {
			if _, err := crds.Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("CRD %s: %v", u.GetName(), err)
			}
		}
	}
	gv := volumesnapshotv1.SchemeGroupVersion.String()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if rl, err := cs.Discovery().ServerResourcesForGroupVersion(gv); err == nil && len(rl.APIResources) >= 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not served", gv)
		}
	}
}
