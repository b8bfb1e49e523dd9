package rdstest_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/srvlab/rds-csi/internal/testutil"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

func TestClientConfig(t *testing.T) {
	s := newServer(t)
	cfg := s.ClientConfig()
	if cfg.User != "admin" || len(cfg.Auth) != 1 || cfg.HostKeyCallback == nil {
		t.Fatalf("ClientConfig = %+v", cfg)
	}
	if cfg2 := s.ClientConfig(); cfg2 == cfg {
		t.Fatal("ClientConfig returned a shared value")
	}
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Fatalf("Addr = %q", s.Addr())
	}
	if string(s.ClientSigner().PublicKey().Marshal()) == string(s.HostKey().Marshal()) {
		t.Fatal("client and host keys are the same")
	}
	// The host key is pinned: another server's key is refused.
	other := newServer(t)
	conf := sshConfig(s, "")
	conf.HostKeyCallback = ssh.FixedHostKey(other.HostKey())
	if _, err := ssh.Dial("tcp", s.Addr(), conf); err == nil {
		t.Fatal("dial with the wrong host key succeeded")
	}
}

func TestHostSigner(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, rdstest.WithHostSigner(signer))
	if string(s.HostKey().Marshal()) != string(signer.PublicKey().Marshal()) {
		t.Fatal("WithHostSigner ignored")
	}
	dial(t, s, "")
}

func TestUnknownKeyRefused(t *testing.T) {
	s := newServer(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	conf := sshConfig(s, "")
	conf.Auth = []ssh.AuthMethod{ssh.PublicKeys(signer)}
	if c, err := ssh.Dial("tcp", s.Addr(), conf); err == nil {
		c.Close()
		t.Fatal("unknown key accepted")
	}
	conf.Auth = []ssh.AuthMethod{ssh.Password("admin")}
	if c, err := ssh.Dial("tcp", s.Addr(), conf); err == nil {
		c.Close()
		t.Fatal("password accepted")
	}
	s.AuthorizeKey(signer.PublicKey())
	conf.Auth = []ssh.AuthMethod{ssh.PublicKeys(signer)}
	c, err := ssh.Dial("tcp", s.Addr(), conf)
	if err != nil {
		t.Fatalf("authorised key refused: %v", err)
	}
	c.Close()
}

func TestUserNames(t *testing.T) {
	s := newServer(t)
	for _, user := range []string{"root", "admin2", "Admin", "admin+x", "admin+0w", "admin+12", "+ct"} {
		if c, err := ssh.Dial("tcp", s.Addr(), sshConfig(s, user)); err == nil {
			c.Close()
			t.Errorf("user %q accepted", user)
		}
	}
	const slot = "pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f"
	ok(t, dial(t, s, "admin+ct"), addDisk(slot, "1G")+exportArgs(slot))
	nqnLine := `nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:` + slot + `"`
	for user, width := range map[string]int{"admin": 80, "admin+ct": 80, "admin+c250w": 250, "admin+c40w20h": 40, "admin+250wct": 250} {
		out := ok(t, dial(t, s, user), "/disk print detail where slot="+slot)
		widest := 0
		for _, l := range strings.Split(out, "\r\n") {
			widest = max(widest, len(l))
		}
		if widest > width || (width == 250 && !strings.Contains(out, nqnLine)) || (width < 250 && strings.Contains(out, nqnLine)) {
			t.Errorf("%s: widest line %d, want at most %d:\n%s", user, widest, width, out)
		}
	}
}

func TestKeepaliveNotAnswered(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	for range 3 {
		okReply, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
		if err != nil {
			t.Fatalf("keepalive: %v", err)
		}
		if okReply {
			t.Fatal("keepalive answered with success; RouterOS does not answer it")
		}
	}
	// The connection is still usable.
	ok(t, c, "/system identity print")
}

func TestExecOnly(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	for name, req := range map[string]func(*ssh.Session) error{
		"pty":       func(ss *ssh.Session) error { return ss.RequestPty("xterm", 24, 80, nil) },
		"shell":     func(ss *ssh.Session) error { return ss.Shell() },
		"subsystem": func(ss *ssh.Session) error { return ss.RequestSubsystem("sftp") },
	} {
		ss, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if err := req(ss); err == nil {
			t.Errorf("%s request accepted", name)
		}
		ss.Close()
	}
	if _, _, err := c.OpenChannel("direct-tcpip", nil); err == nil {
		t.Error("direct-tcpip channel accepted")
	}
	ok(t, c, "/system identity print")
}

func TestConcurrentSessions(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			out, err := exec(c, addDisk(fmt.Sprintf("pvc-%d", i), "1G"))
			if err != nil || out.status != 0 {
				errs <- fmt.Errorf("add %d: %v %+v", i, err, out)
			}
		}()
		go func() {
			defer wg.Done()
			out, err := exec(c, "/system identity print")
			if err != nil || out.stdout != "  name: rds\r\n" {
				errs <- fmt.Errorf("identity: %v %+v", err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	out := ok(t, c, `/disk print count-only where slot~"^pvc-"`)
	if out != fmt.Sprintf("%d\r\n", n) {
		t.Fatalf("count-only = %q, want %d", out, n)
	}
}

func TestCommandsLog(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	s.Inject(rdstest.FailAlways("identity", "failure: injected"))
	cmds := []string{"/system identity print", "/dsk print", `/disk print where slot~"^a"`}
	for _, cmd := range cmds {
		mustRun(t, c, cmd)
	}
	got := s.Commands()
	if strings.Join(got, "|") != strings.Join(cmds, "|") {
		t.Fatalf("Commands = %q, want %q", got, cmds)
	}
	got[0] = "mutated"
	if s.Commands()[0] != cmds[0] {
		t.Fatal("Commands returned shared storage")
	}
	s.ResetCommands()
	if got := s.Commands(); len(got) != 0 {
		t.Fatalf("after reset: %q", got)
	}
}

func TestOptionsValidated(t *testing.T) {
	for name, opt := range map[string]rdstest.Option{
		"width":     rdstest.WithWidth(0),
		"pool name": rdstest.WithPool("a/b", 1<<30),
		"capacity":  rdstest.WithPool("p", 0),
	} {
		if s, err := rdstest.NewServer(opt); err == nil {
			s.Close()
			t.Errorf("%s: accepted", name)
		}
	}
	if s, err := rdstest.NewServer(rdstest.WithPool("p", 1), rdstest.WithPool("p", 1)); err == nil {
		s.Close()
		t.Error("duplicate pool accepted")
	}
}

func TestWithDataDirKept(t *testing.T) {
	dir := t.TempDir()
	s, err := rdstest.NewServer(rdstest.WithDataDir(dir), rdstest.WithPool("fast", 1<<30))
	if err != nil {
		t.Fatal(err)
	}
	if s.DataDir() != dir {
		t.Fatalf("DataDir = %q", s.DataDir())
	}
	c, err := ssh.Dial("tcp", s.Addr(), sshConfig(s, ""))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec(c, "/disk add type=file file-path=/fast/a.img file-size=1M slot=a"); err != nil || out.status != 0 {
		t.Fatalf("add: %v %+v", err, out)
	}
	c.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fileSize(t, dir+"/fast/a.img") != 1<<20 {
		t.Fatal("backing file lost")
	}
}

func TestWithLogger(t *testing.T) {
	var buf testutil.SyncBuffer
	s := newServer(t, rdstest.WithLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	s.RejectAuth(true)
	if c, err := ssh.Dial("tcp", s.Addr(), sshConfig(s, "")); err == nil {
		c.Close()
	}
	waitFor(t, func() bool { return strings.Contains(buf.String(), "rdstest: handshake") })
}
