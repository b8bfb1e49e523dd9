package rdsclient

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/srvlab/rds-csi/internal/routeros"
)

// HostKeyError reports that the RDS presented a host key that
// Config.HostKeyCallback refused: the device was re-keyed, the pinned key
// is wrong, or another machine answers at the address. Only a change of
// configuration fixes it, so it is never retried; it wraps ErrHostKey and
// the callback's error, not ErrUnavailable.
type HostKeyError struct {
	// Addr is the address dialled, "host:port".
	Addr string
	// KeyType and Fingerprint describe the key the RDS presented:
	// "ssh-ed25519" and "SHA256:...".
	KeyType     string
	Fingerprint string
	// Want holds the SHA256 fingerprints of the keys accepted for Addr
	// when the callback tells them: the pinned key of FixedHostKey and
	// HostKeyFromLine, the entries of the known_hosts files of KnownHosts.
	// It is empty when no key is known for Addr or the callback is of
	// another origin.
	Want []string
	// Err is the callback's own error.
	Err error
}

// Error says what was presented, what was expected and what to change.
func (e *HostKeyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: the RDS at %s presented host key %s %s", ErrHostKey, e.Addr, e.KeyType, e.Fingerprint)
	switch len(e.Want) {
	case 0:
		b.WriteString("; no pinned key matches it")
		if e.Err != nil {
			fmt.Fprintf(&b, " (%v)", e.Err)
		}
		b.WriteString("; pin the device's host key (Config.HostKeyCallback)")
		return b.String()
	case 1:
		fmt.Fprintf(&b, "; the pinned key is %s", e.Want[0])
	default:
		fmt.Fprintf(&b, "; the pinned keys are %s", strings.Join(e.Want, ", "))
	}
	b.WriteString("; update the pinned host key (Config.HostKeyCallback) if the device was re-keyed")
	return b.String()
}

// Unwrap returns ErrHostKey and the callback's error.
func (e *HostKeyError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrHostKey}
	}
	return []error{ErrHostKey, e.Err}
}

// newHostKeyError describes a refusal of key by a host key callback,
// keeping what a callback of this package already said about it.
func newHostKeyError(addr string, key ssh.PublicKey, err error) *HostKeyError {
	var own *HostKeyError
	if errors.As(err, &own) {
		e := *own
		e.Addr = addr
		if err != error(own) {
			e.Err = err // a caller's callback wrapped ours: keep its words
		}
		return &e
	}
	e := &HostKeyError{Addr: addr, KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(key), Err: err}
	var ke *knownhosts.KeyError
	if errors.As(err, &ke) {
		for _, k := range ke.Want {
			e.Want = append(e.Want, ssh.FingerprintSHA256(k.Key))
		}
	}
	return e
}

// AuthError reports that the RDS refused the login after its host key
// was accepted: the user does not exist, or none of Config.Auth is
// accepted for it (typically the client's public key was never imported
// for the user). Only a change of configuration fixes it, so it is never
// retried; it wraps ErrAuth and the SSH error, not ErrUnavailable.
type AuthError struct {
	// Addr is the address dialled, "host:port".
	Addr string
	// User is Config.User as given, without the console flags Dial adds.
	User string
	// Err is the error of the SSH handshake.
	Err error
}

// Error says who was refused and what to change.
func (e *AuthError) Error() string {
	return fmt.Sprintf("%v: the RDS at %s refused the login of user %q; import the client's public key for that user "+
		"on the device (/user ssh-keys import) or correct Config.User and Config.Auth: %v", ErrAuth, e.Addr, e.User, e.Err)
}

// Unwrap returns ErrAuth and the SSH error.
func (e *AuthError) Unwrap() []error { return []error{ErrAuth, e.Err} }

// misconfigured reports the errors only an operator can fix.
func misconfigured(err error) bool {
	return errors.Is(err, ErrHostKey) || errors.Is(err, ErrAuth)
}

// transportError is a failure of the SSH transport, not of the command.
// sent tells whether the command may have reached the RDS: when it is
// false the command certainly did not run and may be repeated.
type transportError struct {
	op   string
	sent bool
	err  error
}

func (e *transportError) Error() string {
	return fmt.Sprintf("%v: %s: %v", ErrUnavailable, e.op, e.err)
}

func (e *transportError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

// dialError is a failed dial other than a refused host key or login.
// transient is false for failures that a retry cannot fix (no common
// algorithm, a protocol error).
type dialError struct {
	addr      string
	transient bool
	err       error
}

func (e *dialError) Error() string {
	return fmt.Sprintf("%v: dial %s: %v", ErrUnavailable, e.addr, e.err)
}

func (e *dialError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

// ctxError reports that the caller's context ended. It is classed as
// ErrUnavailable (the RDS did not answer in time, or the caller gave up)
// and also matches the context error itself.
type ctxError struct {
	op  string
	err error
}

func (e *ctxError) Error() string {
	return fmt.Sprintf("rdsclient: %s: %v", e.op, e.err)
}

func (e *ctxError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

func newCtxError(op string, ctx context.Context) error {
	err := ctx.Err()
	if err == nil {
		err = context.Canceled
	}
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		// A coalesced read's print, cancelled because its last caller's
		// deadline passed: a timeout, as that caller saw it.
		err = context.DeadlineExceeded
	}
	return &ctxError{op: op, err: err}
}

func closedError(op string) error {
	return fmt.Errorf("%w: %s", ErrClosed, op)
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

func unexpectedf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnexpectedOutput}, args...)...)
}

// classError maps a routeros class to the sentinel of this package.
func classError(c routeros.Class) error {
	switch c {
	case routeros.ClassNotFound:
		return ErrNotFound
	case routeros.ClassExists:
		return ErrExists
	case routeros.ClassNoSpace:
		return ErrNoSpace
	case routeros.ClassInvalid:
		return ErrInvalid
	case routeros.ClassInUse:
		return ErrInUse
	default:
		return ErrUnexpectedOutput
	}
}

// status is the Observer status of an error.
func status(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, ErrHostKey):
		return "host_key_mismatch"
	case errors.Is(err, ErrAuth):
		return "auth_failed"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrExists):
		return "exists"
	case errors.Is(err, ErrNoSpace):
		return "no_space"
	case errors.Is(err, ErrInvalid):
		return "invalid"
	case errors.Is(err, ErrInUse):
		return "in_use"
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrClosed):
		return "unavailable"
	default:
		return "error"
	}
}
