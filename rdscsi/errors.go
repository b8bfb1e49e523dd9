package rdscsi

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdscsi/nvme"
)

// Error classes of this package. RPC handlers return Go errors wrapping
// these (or the sentinels of rdsclient, attach and nvme); Status is the one place
// that turns them into gRPC codes.
var (
	// ErrInvalidArgument: a request field is missing or malformed.
	ErrInvalidArgument = errors.New("rdscsi: invalid argument")
	// ErrNotFound: the volume, snapshot or node does not exist.
	ErrNotFound = errors.New("rdscsi: not found")
	// ErrAlreadyExists: a volume or snapshot of that name exists with
	// incompatible parameters.
	ErrAlreadyExists = errors.New("rdscsi: already exists")
	// ErrFailedPrecondition: the request conflicts with the current state
	// (for example a device that is not the one that was staged).
	ErrFailedPrecondition = errors.New("rdscsi: failed precondition")
	// ErrAborted: another operation on the same volume is in progress, or
	// a pagination token is stale.
	ErrAborted = errors.New("rdscsi: operation aborted")
	// ErrOutOfRange: a capacity range that cannot be satisfied.
	ErrOutOfRange = errors.New("rdscsi: out of range")
	// ErrUnimplemented: the operation is not offered by this configuration.
	ErrUnimplemented = errors.New("rdscsi: not implemented")
	// ErrDeviceNotReady: a block device on the node could not be read or
	// probed reliably, or does not show its new size yet; retry later.
	ErrDeviceNotReady = errors.New("rdscsi: device not ready")
	// ErrUnavailable: a dependency (the RDS, the node lookup) cannot be
	// reached now; the call may be retried.
	ErrUnavailable = errors.New("rdscsi: unavailable")
	// ErrResourceExhausted: the request cannot be served with the
	// resources at hand (for example no requisite topology reaches the
	// RDS).
	ErrResourceExhausted = errors.New("rdscsi: resource exhausted")
)

// errorf wraps class with a formatted message: errorf(ErrInvalidArgument,
// "volume ID %q", id).
func errorf(class error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", class, fmt.Sprintf(format, args...))
}

// codeTable maps every error class to its gRPC code. Order matters only
// where one error could wrap several classes; the first match wins.
var codeTable = []struct {
	class error
	code  codes.Code
}{
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},

	{ErrInvalidArgument, codes.InvalidArgument},
	{ErrNotFound, codes.NotFound},
	{ErrAlreadyExists, codes.AlreadyExists},
	{ErrFailedPrecondition, codes.FailedPrecondition},
	{ErrAborted, codes.Aborted},
	{ErrOutOfRange, codes.OutOfRange},
	{ErrUnimplemented, codes.Unimplemented},
	{ErrDeviceNotReady, codes.Unavailable},
	{ErrUnavailable, codes.Unavailable},
	{ErrResourceExhausted, codes.ResourceExhausted},

	{rdsclient.ErrInvalid, codes.InvalidArgument},
	{rdsclient.ErrNotFound, codes.NotFound},
	{rdsclient.ErrExists, codes.AlreadyExists},
	{rdsclient.ErrNoSpace, codes.ResourceExhausted},
	{rdsclient.ErrInUse, codes.FailedPrecondition},
	{rdsclient.ErrHostKey, codes.FailedPrecondition}, // *rdsclient.HostKeyError: fix the pinned key, retrying cannot help
	{rdsclient.ErrAuth, codes.FailedPrecondition},    // *rdsclient.AuthError: fix the user or key
	{rdsclient.ErrUnavailable, codes.Unavailable},
	{rdsclient.ErrClosed, codes.Unavailable},
	{rdsclient.ErrUnexpectedOutput, codes.Internal},

	{attach.ErrInvalid, codes.InvalidArgument},
	{attach.ErrConflict, codes.FailedPrecondition},
	{attach.ErrMigrationLimit, codes.FailedPrecondition},
	{attach.ErrMigrationTimedOut, codes.FailedPrecondition},
	{attach.ErrClosed, codes.Unavailable},

	{nvme.ErrNotConnected, codes.FailedPrecondition},
	{nvme.ErrInvalid, codes.InvalidArgument},
	{nvme.ErrForeign, codes.InvalidArgument},
	{nvme.ErrTimeout, codes.Unavailable},
}

// Status converts an error returned by a handler into a gRPC status error.
// It is the only place where this package chooses gRPC codes. nil stays
// nil; an error that already carries a gRPC status keeps it; unknown errors
// are Internal.
func Status(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(Code(err), err.Error())
}

// Code returns the gRPC code Status would use for err.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	for _, e := range codeTable {
		if errors.Is(err, e.class) {
			return e.code
		}
	}
	return codes.Internal
}
