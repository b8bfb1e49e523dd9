package rdsclient

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// errHostKeyMismatch is wrapped by the host key callbacks of this package
// when the RDS presents a key other than the pinned one.
var errHostKeyMismatch = errors.New("rdsclient: host key mismatch")

// FixedHostKey returns a callback that accepts only key: same type and
// same key bytes.
func FixedHostKey(key ssh.PublicKey) ssh.HostKeyCallback {
	if key == nil {
		return func(string, net.Addr, ssh.PublicKey) error {
			return fmt.Errorf("%w: no host key pinned", errHostKeyMismatch)
		}
	}
	want := key.Marshal()
	wantType := key.Type()
	return func(hostname string, _ net.Addr, got ssh.PublicKey) error {
		if got.Type() != wantType || !bytes.Equal(got.Marshal(), want) {
			return fmt.Errorf("%w for %s: got %s %s, want %s %s", errHostKeyMismatch, hostname,
				got.Type(), ssh.FingerprintSHA256(got), wantType, ssh.FingerprintSHA256(key))
		}
		return nil
	}
}

// HostKeyFromLine pins the key of one authorized_keys-style line
// ("ssh-ed25519 AAAA... [comment]") or known_hosts-style line
// ("host ssh-ed25519 AAAA..."). The host names of a known_hosts line are
// ignored: the key alone is pinned.
func HostKeyFromLine(line string) (ssh.HostKeyCallback, error) {
	line = strings.TrimSpace(line)
	if line == "" {
		return nil, invalidf("empty host key line")
	}
	if key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err == nil {
		return FixedHostKey(key), nil
	}
	_, _, key, _, _, err := ssh.ParseKnownHosts([]byte(line))
	if err != nil {
		return nil, invalidf("host key line: %w", err)
	}
	return FixedHostKey(key), nil
}

// KnownHosts returns a callback backed by OpenSSH known_hosts files.
func KnownHosts(files ...string) (ssh.HostKeyCallback, error) {
	if len(files) == 0 {
		return nil, invalidf("no known_hosts file given")
	}
	cb, err := knownhosts.New(files...)
	if err != nil {
		return nil, fmt.Errorf("rdsclient: known hosts: %w", err)
	}
	return cb, nil
}
