package rdsclient_test

import (
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/srvlab/rds-csi/rdsclient"
)

// countingHostKey wraps cb and counts its calls.
func countingHostKey(cb ssh.HostKeyCallback, calls *atomic.Int32) ssh.HostKeyCallback {
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		calls.Add(1)
		return cb(host, remote, key)
	}
}

// countingAuth offers signer and counts the handshakes that used it.
func countingAuth(signer ssh.Signer, calls *atomic.Int32) ssh.AuthMethod {
	return ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		calls.Add(1)
		return []ssh.Signer{signer}, nil
	})
}

// TestHostKeyError dials rdstest's SSH server with host keys it does not
// present: the error is a *HostKeyError naming both keys, it is not
// ErrUnavailable (a retry cannot help), and Dial does not retry it.
func TestHostKeyError(t *testing.T) {
	checkLeaks(t)
	srv := newServer(t)
	ctx := testCtx(t)
	other := newKey(t).PublicKey()
	presented := ssh.FingerprintSHA256(srv.HostKey())
	dir := t.TempDir()
	wrongFile := filepath.Join(dir, "wrong")
	writeFile(t, wrongFile, knownhosts.Line([]string{knownhosts.Normalize(srv.Addr())}, other)+"\n")
	unknownFile := filepath.Join(dir, "unknown")
	writeFile(t, unknownFile, knownhosts.Line([]string{"rds.elsewhere"}, srv.HostKey())+"\n")
	fromLine, err := rdsclient.HostKeyFromLine(string(ssh.MarshalAuthorizedKey(other)))
	if err != nil {
		t.Fatal(err)
	}
	knownWrong, err := rdsclient.KnownHosts(wrongFile)
	if err != nil {
		t.Fatal(err)
	}
	knownNone, err := rdsclient.KnownHosts(unknownFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cb   ssh.HostKeyCallback
		want []string // fingerprints HostKeyError.Want must hold
		text string   // what the message must tell the operator
	}{
		{"FixedHostKey", rdsclient.FixedHostKey(other), []string{ssh.FingerprintSHA256(other)},
			"; the pinned key is " + ssh.FingerprintSHA256(other) + "; update the pinned host key (Config.HostKeyCallback) if the device was re-keyed"},
		{"HostKeyFromLine", fromLine, []string{ssh.FingerprintSHA256(other)}, "update the pinned host key"},
		{"KnownHosts mismatch", knownWrong, []string{ssh.FingerprintSHA256(other)}, "update the pinned host key"},
		{"KnownHosts unknown host", knownNone, nil, "no pinned key matches it (knownhosts: key is unknown); pin the device's host key"},
		{"ssh.FixedHostKey", ssh.FixedHostKey(other), nil, "no pinned key matches it (ssh: host key mismatch)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.ResetCommands()
			var calls atomic.Int32
			cfg := srv.ClientConfig()
			cfg.HostKeyCallback = countingHostKey(tc.cb, &calls)
			c, err := rdsclient.Dial(ctx, srv.Addr(), cfg, rdsclient.WithRetry(5, time.Millisecond))
			if c != nil {
				c.Close()
			}
			var he *rdsclient.HostKeyError
			if !errors.As(err, &he) {
				t.Fatalf("Dial = %v, want a *HostKeyError", err)
			}
			if errors.Is(err, rdsclient.ErrUnavailable) || !errors.Is(err, rdsclient.ErrHostKey) {
				t.Errorf("Dial = %v: matches ErrUnavailable %v (want false), ErrHostKey %v (want true)",
					err, errors.Is(err, rdsclient.ErrUnavailable), errors.Is(err, rdsclient.ErrHostKey))
			}
			if he.Addr != srv.Addr() || he.KeyType != srv.HostKey().Type() || he.Fingerprint != presented || !slices.Equal(he.Want, tc.want) {
				t.Errorf("HostKeyError = %+v, want address %s, presented %s %s, want %q",
					he, srv.Addr(), srv.HostKey().Type(), presented, tc.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "rdsclient: host key refused: the RDS at "+srv.Addr()+" presented host key "+
				srv.HostKey().Type()+" "+presented) || !strings.Contains(msg, tc.text) {
				t.Errorf("message %q does not say what was presented and what to change (%q)", msg, tc.text)
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("host key checked %d times: a refused host key must not be retried", n)
			}
			if cmds := srv.Commands(); len(cmds) != 0 {
				t.Errorf("commands sent: %q", cmds)
			}
		})
	}
}

// TestAuthError dials rdstest's SSH server with a key it does not know
// and with a user it does not have: the error is an *AuthError naming
// the address and the user as configured, it is not ErrUnavailable, and
// Dial does not retry it.
func TestAuthError(t *testing.T) {
	checkLeaks(t)
	srv := newServer(t)
	ctx := testCtx(t)
	for _, tc := range []struct {
		name, user string
		key        ssh.Signer
	}{
		{"unknown key", "admin", newKey(t)},
		{"unknown user", "root", srv.ClientSigner()},
		{"unknown user with flags", "root+ct", srv.ClientSigner()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			cfg := srv.ClientConfig()
			cfg.User = tc.user
			cfg.Auth = []ssh.AuthMethod{countingAuth(tc.key, &calls)}
			c, err := rdsclient.Dial(ctx, srv.Addr(), cfg, rdsclient.WithRetry(5, time.Millisecond))
			if c != nil {
				c.Close()
			}
			var ae *rdsclient.AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("Dial = %v, want an *AuthError", err)
			}
			if errors.Is(err, rdsclient.ErrUnavailable) || !errors.Is(err, rdsclient.ErrAuth) {
				t.Errorf("Dial = %v: matches ErrUnavailable %v (want false), ErrAuth %v (want true)",
					err, errors.Is(err, rdsclient.ErrUnavailable), errors.Is(err, rdsclient.ErrAuth))
			}
			if ae.Addr != srv.Addr() || ae.User != tc.user || ae.Err == nil {
				t.Errorf("AuthError = %+v, want address %s, user %q", ae, srv.Addr(), tc.user)
			}
			if msg := err.Error(); !strings.Contains(msg, "refused the login of user \""+tc.user+"\"") ||
				!strings.Contains(msg, "/user ssh-keys import") {
				t.Errorf("message %q does not say who was refused and what to change", msg)
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("%d logins: a refused login must not be retried", n)
			}
		})
	}
}

// TestRedialRefused: a connected client whose re-dial meets a refused
// host key or login returns the typed error to the call that needed the
// connection, tries once per call (no retry loop), reports it to the
// Observer under its own status, and recovers once the refusal ends.
func TestRedialRefused(t *testing.T) {
	checkLeaks(t)
	srv := newServer(t)
	ctx := testCtx(t)
	var (
		reject, keyCalls, authCalls atomic.Int32
	)
	pinned := rdsclient.FixedHostKey(srv.HostKey())
	wrong := rdsclient.FixedHostKey(newKey(t).PublicKey())
	cfg := srv.ClientConfig()
	cfg.HostKeyCallback = func(host string, remote net.Addr, key ssh.PublicKey) error {
		keyCalls.Add(1)
		if reject.Load() == 1 {
			return wrong(host, remote, key) // as if the device had been re-keyed
		}
		return pinned(host, remote, key)
	}
	cfg.Auth = []ssh.AuthMethod{countingAuth(srv.ClientSigner(), &authCalls)}
	obs := newObserver()
	c, err := rdsclient.Dial(ctx, srv.Addr(), cfg, rdsclient.WithObserver(obs), rdsclient.WithRetry(5, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	t.Run("host key", func(t *testing.T) {
		reject.Store(1)
		defer reject.Store(0)
		before := keyCalls.Load()
		srv.DropConnections()
		err := c.Ping(ctx)
		var he *rdsclient.HostKeyError
		if !errors.As(err, &he) || errors.Is(err, rdsclient.ErrUnavailable) {
			t.Fatalf("Ping after re-keying = %v, want a *HostKeyError that is not ErrUnavailable", err)
		}
		if n := keyCalls.Load() - before; n != 1 {
			t.Errorf("%d re-dials for one Ping with WithRetry(5): a refused host key must not be retried", n)
		}
		if n := obs.commandCount("system identity print host_key_mismatch"); n != 1 {
			t.Errorf("observer saw %d host_key_mismatch statuses, want 1 (%v)", n, obs.commands)
		}
	})
	t.Run("login", func(t *testing.T) {
		srv.RejectAuth(true)
		defer srv.RejectAuth(false)
		before := authCalls.Load()
		srv.DropConnections()
		err := c.Ping(ctx)
		var ae *rdsclient.AuthError
		if !errors.As(err, &ae) || errors.Is(err, rdsclient.ErrUnavailable) || ae.User != "admin" {
			t.Fatalf("Ping while logins are refused = %v, want an *AuthError for admin that is not ErrUnavailable", err)
		}
		if n := authCalls.Load() - before; n != 1 {
			t.Errorf("%d logins for one Ping with WithRetry(5): a refused login must not be retried", n)
		}
		if n := obs.commandCount("system identity print auth_failed"); n != 1 {
			t.Errorf("observer saw %d auth_failed statuses, want 1 (%v)", n, obs.commands)
		}
	})
	// Nothing sticks: once the device is as pinned again, the next call
	// re-dials and works.
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping after the refusals ended: %v", err)
	}
	if n := obs.reconnectCount("error"); n != 2 {
		t.Errorf("%d failed re-dials, want 2", n)
	}
}
