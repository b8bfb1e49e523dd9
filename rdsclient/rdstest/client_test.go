package rdstest_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

// newServer starts a fake and closes it when the test ends.
func newServer(t testing.TB, opts ...rdstest.Option) *rdstest.Server {
	t.Helper()
	s, err := rdstest.NewServer(opts...)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// sshConfig turns the fake's rdsclient.Config into an ssh.ClientConfig,
// with an optional user name (console flags) override.
func sshConfig(s *rdstest.Server, user string) *ssh.ClientConfig {
	cfg := s.ClientConfig()
	if user == "" {
		user = cfg.User
	}
	return &ssh.ClientConfig{User: user, Auth: cfg.Auth, HostKeyCallback: cfg.HostKeyCallback, Timeout: 10 * time.Second}
}

// dial opens a raw SSH connection, closed when the test ends.
func dial(t testing.TB, s *rdstest.Server, user string) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", s.Addr(), sshConfig(s, user))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// output is what one command produced.
type output struct {
	stdout, stderr string
	status         int
}

// exec runs one command in its own session, as a RouterOS client does.
func exec(c *ssh.Client, cmd string) (output, error) {
	sess, err := c.NewSession()
	if err != nil {
		return output{}, err
	}
	defer sess.Close()
	var so, se bytes.Buffer
	sess.Stdout, sess.Stderr = &so, &se
	err = sess.Run(cmd)
	out := output{stdout: so.String(), stderr: se.String()}
	var ee *ssh.ExitError
	switch {
	case errors.As(err, &ee):
		out.status = ee.ExitStatus()
	case err != nil:
		return out, err
	}
	return out, nil
}

// mustRun runs cmd and fails the test on a transport error.
func mustRun(t testing.TB, c *ssh.Client, cmd string) output {
	t.Helper()
	out, err := exec(c, cmd)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return out
}

// ok runs cmd and requires exit status 0 and no stderr.
func ok(t testing.TB, c *ssh.Client, cmd string) string {
	t.Helper()
	out := mustRun(t, c, cmd)
	if out.status != 0 || out.stderr != "" {
		t.Fatalf("%s: status %d stdout %q stderr %q", cmd, out.status, out.stdout, out.stderr)
	}
	return out.stdout
}

// fails runs cmd and requires exit status 1 with want (plus CRLF) on stdout.
func fails(t testing.TB, c *ssh.Client, cmd, want string) {
	t.Helper()
	out := mustRun(t, c, cmd)
	if out.status == 0 || out.stdout != want+"\r\n" || out.stderr != "" {
		t.Fatalf("%s: got status %d stdout %q stderr %q; want non-zero status and %q", cmd, out.status, out.stdout, out.stderr, want)
	}
}
