package rdsclient

import (
	"fmt"
	"net"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// FixedHostKey returns a callback that accepts only key, checked by
// ssh.FixedHostKey. A refusal is a *HostKeyError naming both
// fingerprints; a nil key refuses every host.
func FixedHostKey(key ssh.PublicKey) ssh.HostKeyCallback {
	check := ssh.FixedHostKey(key)
	var want []string
	if key != nil {
		want = []string{ssh.FingerprintSHA256(key)}
	}
	return func(hostname string, remote net.Addr, got ssh.PublicKey) error {
		err := check(hostname, remote, got)
		if err == nil {
			return nil
		}
		return &HostKeyError{Addr: hostname, KeyType: got.Type(), Fingerprint: ssh.FingerprintSHA256(got), Want: want, Err: err}
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

// KnownHosts returns a callback backed by OpenSSH known_hosts files. A
// refusal is a *HostKeyError carrying the fingerprints the files hold for
// the host (none for an unknown host), wrapping the knownhosts error.
func KnownHosts(files ...string) (ssh.HostKeyCallback, error) {
	if len(files) == 0 {
		return nil, invalidf("no known_hosts file given")
	}
	cb, err := knownhosts.New(files...)
	if err != nil {
		return nil, fmt.Errorf("rdsclient: known hosts: %w", err)
	}
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		if err := cb(hostname, remote, key); err != nil {
			return newHostKeyError(hostname, key, err)
		}
		return nil
	}, nil
}
