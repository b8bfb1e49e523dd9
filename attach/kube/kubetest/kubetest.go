package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// The versions .ci/kube-tools builds; Start looks for them by these names.
const (
	KubeAPIServerVersion = "v1.37.2"
	EtcdVersion          = "v3.7.3"
)

// AssetsEnv names the environment variable of the directory holding the
// etcd and kube-apiserver binaries.
const AssetsEnv = "RDS_CSI_KUBE_ASSETS"

// adminToken authenticates Config as a member of system:masters. The
// server listens on loopback only and lives as long as one test.
const adminToken = "kubetest-admin"

// startTimeout bounds how long Start waits for the API server to be
// ready (a cold start takes a few seconds).
const startTimeout = 90 * time.Second

// AssetsDir returns the directory holding the etcd and kube-apiserver
// binaries: $RDS_CSI_KUBE_ASSETS, or the cache directory .ci/kube-tools
// builds into ($XDG_CACHE_HOME or ~/.cache, then
// rds-csi/kube-assets-<apiserver>-etcd-<etcd>). It reports an error when
// either binary is missing.
func AssetsDir() (string, error) {
	dir := os.Getenv(AssetsEnv)
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(cache, "rds-csi", "kube-assets-"+KubeAPIServerVersion+"-etcd-"+EtcdVersion)
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return dir, fmt.Errorf("kubetest: %s: %w", b, err)
		}
	}
	return dir, nil
}

// Server is a running kube-apiserver with its etcd. Its methods are safe
// for concurrent use.
type Server struct {
	dir    string
	url    string
	caFile string
	etcd   *process

	// apiserverBin and apiserverArgs start the API server, the first time
	// and on every StartAPIServer, so that it comes back on the same
	// address with the same certificates, tokens and flags.
	apiserverBin  string
	apiserverArgs []string

	mu        sync.Mutex // guards apiserver and stopped
	apiserver *process
	stopped   bool // Stop was called
}

// process is a started binary and its log.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func start(dir, name, bin string, args ...string) (*process, error) {
	// Appended to, so that a restarted process's log follows the last one's.
	f, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so that a test binary killed by a signal
	// does not take the terminal's job control with it, and Stop can
	// end the binary's children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("kubetest: starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the process (SIGTERM, then SIGKILL after a grace) and waits.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start starts etcd and kube-apiserver for t and stops them when t ends.
// Without the binaries it skips t, saying how to build them, unless the
// CI environment variable is set: then it fails t.
func Start(t testing.TB) *Server {
	t.Helper()
	assets, err := AssetsDir()
	if err != nil {
		msg := fmt.Sprintf("kube-apiserver and etcd not found (%v); build them with: bash .ci/kube-tools (or set %s)", err, AssetsEnv)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	s, err := startServer(t.TempDir(), assets)
	if s != nil {
		t.Cleanup(s.Stop)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startServer(dir, assets string) (*Server, error) {
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	s := &Server{dir: dir, url: "https://127.0.0.1:" + strconv.Itoa(ports[2])}

	saKey, err := writeServiceAccountKey(filepath.Join(dir, "sa.key"))
	if err != nil {
		return nil, err
	}
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(adminToken+",admin,admin-uid,system:masters\n"), 0o600); err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "certs")
	s.caFile = filepath.Join(certDir, "apiserver.crt")

	s.etcd, err = start(dir, "etcd", filepath.Join(assets, "etcd"),
		"--name", "kubetest",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "kubetest="+peerURL,
		"--unsafe-no-fsync", // a test's data need not survive a power cut
	)
	if err != nil {
		return nil, err
	}
	s.apiserverBin = filepath.Join(assets, "kube-apiserver")
	s.apiserverArgs = []string{
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--endpoint-reconciler-type", "none",
		"--secure-port", strconv.Itoa(ports[2]),
		"--cert-dir", certDir,
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saKey,
		"--service-account-signing-key-file", saKey,
		"--token-auth-file", tokens,
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.96.0.0/24",
		"--disable-admission-plugins", "ServiceAccount",
		// As kubeadm and every managed cluster: CSI node plugins are
		// privileged.
		"--allow-privileged=true",
	}
	s.apiserver, err = start(dir, "kube-apiserver", s.apiserverBin, s.apiserverArgs...)
	if err != nil {
		return s, err
	}
	if err := s.waitReady(startTimeout); err != nil {
		return s, err
	}
	return s, nil
}

// writeServiceAccountKey writes a fresh RSA key for signing and checking
// service account tokens.
func writeServiceAccountKey(path string) (string, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	return path, os.WriteFile(path, b, 0o600)
}

// waitReady polls /readyz until the server answers ok. Polling is the
// only way to learn it: the server announces readiness nowhere else.
// The caller must not let s.apiserver change meanwhile: startServer owns
// s, StartAPIServer holds s.mu.
func (s *Server) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		for _, p := range []*process{s.etcd, s.apiserver} {
			select {
			case <-p.done:
				return fmt.Errorf("kubetest: %s exited (%v) before the API server was ready; its log:\n%s", p.name, p.err, s.logTail(p.name))
			default:
			}
		}
		if _, err := os.Stat(s.caFile); err == nil {
			cs, err := kubernetes.NewForConfig(s.Config())
			if err != nil {
				return err
			}
			body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			if err == nil && string(body) == "ok" {
				return nil
			}
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubetest: API server not ready after %v (%v); its log:\n%s", timeout, last, s.logTail("kube-apiserver"))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// logTail returns the end of a process's log, for failure messages.
func (s *Server) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(s.dir, name+".log"))
	const max = 4 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// Config returns a configuration that authenticates as an administrator
// (group system:masters, which RBAC lets do anything).
func (s *Server) Config() *rest.Config {
	return &rest.Config{
		Host:            s.url,
		BearerToken:     adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAFile: s.caFile},
		QPS:             1000,
		Burst:           1000,
	}
}

// ConfigFor returns a configuration that acts as user with groups, by
// impersonation: requests get exactly the permissions RBAC grants that
// user, e.g. "system:serviceaccount:kube-system:rds-csi-controller" with
// groups "system:serviceaccounts" and
// "system:serviceaccounts:kube-system".
func (s *Server) ConfigFor(user string, groups ...string) *rest.Config {
	c := s.Config()
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	return c
}

// URL returns the server's https address.
func (s *Server) URL() string { return s.url }

// Stop stops the API server and etcd and waits for both to exit, whether
// or not StopAPIServer stopped the API server before. It may be called
// more than once; Start registers it with t.Cleanup.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	for _, p := range []*process{s.apiserver, s.etcd} {
		if p != nil {
			p.stop()
		}
	}
}

// StopAPIServer stops the API server and waits for it to exit, leaving
// etcd and so the cluster's data as they are: requests fail until
// StartAPIServer. It does nothing when the API server is not running.
func (s *Server) StopAPIServer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.apiserver != nil {
		s.apiserver.stop()
	}
}

// StartAPIServer starts the API server again after StopAPIServer (or
// after it exited by itself) on the same address, with the same
// certificates, tokens and flags, and waits until it is ready, so that
// configurations and clients made before the stop work again. It returns
// an error, and changes nothing, when the API server is running or Stop
// was called. When the new API server is not ready within the time Start
// allows, it stops it and returns an error with the end of its log.
func (s *Server) StartAPIServer() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return fmt.Errorf("kubetest: StartAPIServer after Stop")
	}
	if s.apiserver != nil && !s.apiserver.exited() {
		return fmt.Errorf("kubetest: StartAPIServer: the API server is running")
	}
	p, err := start(s.dir, "kube-apiserver", s.apiserverBin, s.apiserverArgs...)
	if err != nil {
		return err
	}
	s.apiserver = p
	if err := s.waitReady(startTimeout); err != nil {
		p.stop()
		return err
	}
	return nil
}

// WriteKubeconfig writes to path (creating its directory) a kubeconfig
// file for a separate process, such as a binary run with --kubeconfig:
// it names the server's address, embeds its CA certificate, and
// authenticates with the token Config uses. With user empty it acts as
// the administrator, as Config does, and groups must be empty; otherwise
// it impersonates user with groups, exactly as ConfigFor(user, groups...).
// The file is valid while the server runs, including after a restart with
// StartAPIServer.
func (s *Server) WriteKubeconfig(path, user string, groups ...string) error {
	if user == "" && len(groups) > 0 {
		return fmt.Errorf("kubetest: WriteKubeconfig: groups %q without a user", groups)
	}
	ca, err := os.ReadFile(s.caFile)
	if err != nil {
		return fmt.Errorf("kubetest: WriteKubeconfig: %w", err)
	}
	const name = "kubetest"
	c := clientcmdapi.NewConfig()
	c.Clusters[name] = &clientcmdapi.Cluster{Server: s.url, CertificateAuthorityData: ca}
	c.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: adminToken, Impersonate: user, ImpersonateGroups: groups}
	c.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	c.CurrentContext = name
	return clientcmd.WriteToFile(*c, path)
}
