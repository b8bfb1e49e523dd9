package rdscsi_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
	"github.com/srvlab/rds-csi/rdscsi"
)

// TestErrorCodesOverGRPC proves, for each error class, the gRPC code a
// CO sees through a real RPC against the fake RDS and a FileStore.
func TestErrorCodesOverGRPC(t *testing.T) {
	ctx := context.Background()
	rwx := ctrlTestBlockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	publish := func(e *ctrlTestEnv, v *csi.Volume, node string, vc *csi.VolumeCapability) error {
		_, err := e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
			VolumeId: v.VolumeId, NodeId: node, VolumeCapability: vc, VolumeContext: v.VolumeContext})
		return err
	}
	create := func(e *ctrlTestEnv, name string, size int64, caps ...*csi.VolumeCapability) (*csi.Volume, error) {
		r, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq(name, size, caps...))
		return r.GetVolume(), err
	}
	for _, tc := range []struct {
		class string
		want  codes.Code
		cfg   ctrlTestConfig
		run   func(t *testing.T, e *ctrlTestEnv) error
	}{
		{class: "not found (volume)", want: codes.NotFound, run: func(t *testing.T, e *ctrlTestEnv) error {
			_, err := e.cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: rdscsi.VolumeIDForName("none")})
			return err
		}},
		{class: "not found (node)", want: codes.NotFound,
			cfg: ctrlTestConfig{ctrlOpts: []rdscsi.ControllerOption{rdscsi.WithNodeLookup(func(context.Context, string) (bool, error) { return false, nil })}},
			run: func(t *testing.T, e *ctrlTestEnv) error {
				v := ctrlTestMust(create(e, "nf-node", 0))(t)
				return publish(e, v, "ghost", ctrlTestRWO)
			}},
		{class: "already exists", want: codes.AlreadyExists, run: func(t *testing.T, e *ctrlTestEnv) error {
			ctrlTestMust(create(e, "exists", ctrlTestGiB))(t)
			_, err := create(e, "exists", 2*ctrlTestGiB)
			return err
		}},
		{class: "no space", want: codes.ResourceExhausted,
			cfg: ctrlTestConfig{rdsOpts: []rdstest.Option{rdstest.WithPool("storage-pool", 8*ctrlTestMiB)}},
			run: func(t *testing.T, e *ctrlTestEnv) error {
				_, err := create(e, "huge", 16*ctrlTestMiB)
				return err
			}},
		{class: "invalid", want: codes.InvalidArgument, run: func(t *testing.T, e *ctrlTestEnv) error {
			r := ctrlTestCreateReq("invalid", 0)
			r.Parameters = map[string]string{"colour": "blue"}
			_, err := e.cc.CreateVolume(ctx, r)
			return err
		}},
		{class: "out of range", want: codes.OutOfRange, run: func(t *testing.T, e *ctrlTestEnv) error {
			r := ctrlTestCreateReq("oor", 10)
			r.CapacityRange.LimitBytes = 100
			_, err := e.cc.CreateVolume(ctx, r)
			return err
		}},
		{class: "unavailable", want: codes.Unavailable, run: func(t *testing.T, e *ctrlTestEnv) error {
			e.rds.RefuseConnections(true)
			e.rds.DropConnections()
			_, err := create(e, "down", 0)
			return err
		}},
		{class: "deadline", want: codes.DeadlineExceeded,
			cfg: ctrlTestConfig{clientOpts: []rdsclient.Option{rdsclient.WithCommandTimeout(200 * time.Millisecond), rdsclient.WithRetry(1, time.Millisecond)}},
			run: func(t *testing.T, e *ctrlTestEnv) error {
				e.rds.Inject(rdstest.Hang(`^/disk print`))
				_, err := create(e, "hung", 0)
				return err
			}},
		{class: "disk in use", want: codes.FailedPrecondition, run: func(t *testing.T, e *ctrlTestEnv) error {
			v := ctrlTestMust(create(e, "busy", 0))(t)
			e.rds.Inject(rdstest.FailAlways(`^/disk remove`, "failure: disk is in use"))
			_, err := e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.VolumeId})
			return err
		}},
		{class: "unexpected output", want: codes.Internal, run: func(t *testing.T, e *ctrlTestEnv) error {
			e.rds.Inject(rdstest.FailAlways(`^/disk add`, "something nobody has seen before"))
			_, err := create(e, "weird", 0)
			return err
		}},
		{class: "attach conflict", want: codes.FailedPrecondition, run: func(t *testing.T, e *ctrlTestEnv) error {
			v := ctrlTestMust(create(e, "rwo", 0))(t)
			if err := publish(e, v, "a", ctrlTestRWO); err != nil {
				t.Fatal(err)
			}
			return publish(e, v, "b", ctrlTestRWO)
		}},
		{class: "migration limit", want: codes.FailedPrecondition, run: func(t *testing.T, e *ctrlTestEnv) error {
			v := ctrlTestMust(create(e, "rwx", 0, rwx))(t)
			for _, n := range []string{"a", "b"} {
				if err := publish(e, v, n, rwx); err != nil {
					t.Fatal(err)
				}
			}
			return publish(e, v, "c", rwx)
		}},
		{class: "migration timed out", want: codes.FailedPrecondition, run: func(t *testing.T, e *ctrlTestEnv) error {
			r := ctrlTestCreateReq("rwx-timeout", 0, rwx)
			r.Parameters = map[string]string{"migrationTimeoutSeconds": "1"}
			v := ctrlTestMust(e.cc.CreateVolume(ctx, r))(t).GetVolume()
			for _, n := range []string{"a", "b"} {
				if err := publish(e, v, n, rwx); err != nil {
					t.Fatal(err)
				}
			}
			ctrlTestMust(e.cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v.VolumeId, NodeId: "a"}))(t)
			if err := publish(e, v, "c", rwx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1100 * time.Millisecond)
			err := publish(e, v, "d", rwx)
			if !ctrlTestErrContains(err, "timed out") {
				t.Errorf("not a migration timeout: %v", err)
			}
			return err
		}},
		{class: "aborted (bad token)", want: codes.Aborted, run: func(t *testing.T, e *ctrlTestEnv) error {
			_, err := e.cc.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: "garbage"})
			return err
		}},
		{class: "unimplemented", want: codes.Unimplemented, cfg: ctrlTestConfig{noAttach: true}, run: func(t *testing.T, e *ctrlTestEnv) error {
			v := ctrlTestMust(create(e, "unimpl", 0))(t)
			return publish(e, v, "a", ctrlTestRWO)
		}},
		{class: "probe unavailable", want: codes.Unavailable, run: func(t *testing.T, e *ctrlTestEnv) error {
			e.rds.RejectAuth(true)
			e.rds.DropConnections()
			_, err := e.ic.Probe(ctx, &csi.ProbeRequest{})
			return err
		}},
	} {
		t.Run(tc.class, func(t *testing.T) {
			e := newCtrlTestEnv(t, tc.cfg)
			err := tc.run(t, e)
			if got := status.Code(err); got != tc.want {
				t.Errorf("code %v, want %v (err: %v)", got, tc.want, err)
			}
		})
	}
}

func ctrlTestErrContains(err error, s string) bool {
	return err != nil && strings.Contains(status.Convert(err).Message(), s)
}

// TestCodeTable checks Code and Status for every class, wrapped the way
// the packages wrap them.
func TestCodeTable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{nil, codes.OK},
		{rdscsi.ErrInvalidArgument, codes.InvalidArgument},
		{rdscsi.ErrNotFound, codes.NotFound},
		{rdscsi.ErrAlreadyExists, codes.AlreadyExists},
		{rdscsi.ErrFailedPrecondition, codes.FailedPrecondition},
		{rdscsi.ErrAborted, codes.Aborted},
		{rdscsi.ErrOutOfRange, codes.OutOfRange},
		{rdscsi.ErrUnimplemented, codes.Unimplemented},
		{rdscsi.ErrNotConnected, codes.FailedPrecondition},
		{rdscsi.ErrDeviceNotReady, codes.Unavailable},
		{rdscsi.ErrUnavailable, codes.Unavailable},
		{rdscsi.ErrResourceExhausted, codes.ResourceExhausted},
		{&rdsclient.CommandError{Command: "/disk add", Stdout: "failure: not enough space", ExitStatus: 1, Class: rdsclient.ErrNoSpace}, codes.ResourceExhausted},
		{fmt.Errorf("rdsclient: disk print: %w", rdsclient.ErrNotFound), codes.NotFound},
		{fmt.Errorf("x: %w", rdsclient.ErrExists), codes.AlreadyExists},
		{fmt.Errorf("x: %w", rdsclient.ErrInvalid), codes.InvalidArgument},
		{fmt.Errorf("x: %w", rdsclient.ErrInUse), codes.FailedPrecondition},
		{fmt.Errorf("x: %w", rdsclient.ErrUnavailable), codes.Unavailable},
		{fmt.Errorf("x: %w", rdsclient.ErrClosed), codes.Unavailable},
		{fmt.Errorf("x: %w", rdsclient.ErrUnexpectedOutput), codes.Internal},
		// A timed-out command wraps both its class and the context error:
		// the deadline wins.
		{errors.Join(rdsclient.ErrUnavailable, context.DeadlineExceeded), codes.DeadlineExceeded},
		{fmt.Errorf("x: %w", context.Canceled), codes.Canceled},
		{fmt.Errorf("x: %w", attach.ErrConflict), codes.FailedPrecondition},
		{fmt.Errorf("x: %w", attach.ErrMigrationLimit), codes.FailedPrecondition},
		{fmt.Errorf("x: %w", attach.ErrMigrationTimedOut), codes.FailedPrecondition},
		{fmt.Errorf("x: %w", attach.ErrInvalid), codes.InvalidArgument},
		{fmt.Errorf("x: %w", attach.ErrClosed), codes.Unavailable},
		{status.Error(codes.PermissionDenied, "kept"), codes.PermissionDenied},
		{errors.New("something else"), codes.Internal},
	} {
		if got := rdscsi.Code(tc.err); got != tc.want {
			t.Errorf("Code(%v) = %v, want %v", tc.err, got, tc.want)
		}
		st := rdscsi.Status(tc.err)
		if tc.err == nil {
			if st != nil {
				t.Errorf("Status(nil) = %v", st)
			}
			continue
		}
		s, ok := status.FromError(st)
		if !ok || s.Code() != tc.want || !strings.Contains(s.Message(), status.Convert(tc.err).Message()) {
			t.Errorf("Status(%v) = %v", tc.err, st)
		}
	}
}
