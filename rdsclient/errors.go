package rdsclient

import (
	"context"
	"errors"
	"fmt"

	"github.com/srvlab/rds-csi/internal/routeros"
)

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

// dialError is a failed dial. transient is false for failures that a
// retry cannot fix (host key mismatch, authentication refused).
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
