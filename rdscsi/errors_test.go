package rdscsi_test

import (
	"context"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/attach/attachtest"
	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
	"github.com/srvlab/rds-csi/rdscsi"
	"github.com/srvlab/rds-csi/rdscsi/rdscsitest"
)

// errTestEnv is a ctrlTestEnv with, for the node cases, a NodeServer on
// loop devices served next to the controller.
type errTestEnv struct {
	*ctrlTestEnv
	nc   csi.NodeClient
	loop *rdscsitest.LoopConnector
}

// TestErrorCodesOverGRPC proves, for each error class of the table in
// errors.go, the gRPC code a CO sees: each case produces the class from a
// real cause (the fake RDS refusing, hanging or printing what a device
// prints; a FileStore; loop devices on a NodeServer) and calls through
// a gRPC server on a unix socket with the interceptors.
//
// Not here: nvme.ErrInvalid, nvme.ErrForeign and nvme.ErrTimeout, which
// NodeStageVolume's own checks of the target and NQN stop first, and a
// timed-out nvme connect (TestTCPConnectorErrorCodes covers those).
func TestErrorCodesOverGRPC(t *testing.T) {
	ctx := context.Background()
	rwx := ctrlTestBlockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	migrationClock := newCtrlTestClock()
	publish := func(e *errTestEnv, v *csi.Volume, node string, vc *csi.VolumeCapability) error {
		_, err := e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
			VolumeId: v.VolumeId, NodeId: node, VolumeCapability: vc, VolumeContext: v.VolumeContext})
		return err
	}
	create := func(e *errTestEnv, name string, size int64, caps ...*csi.VolumeCapability) (*csi.Volume, error) {
		r, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq(name, size, caps...))
		return r.GetVolume(), err
	}
	for _, tc := range []struct {
		class string
		want  codes.Code
		cfg   ctrlTestConfig
		node  bool // serve a NodeServer on loop devices too
		run   func(t *testing.T, e *errTestEnv) error
	}{
		// rdscsi's own classes.
		{class: "not found (node)", want: codes.NotFound,
			cfg: ctrlTestConfig{ctrlOpts: []rdscsi.ControllerOption{rdscsi.WithNodeLookup(func(context.Context, string) (bool, error) { return false, nil })}},
			run: func(t *testing.T, e *errTestEnv) error {
				v := ctrlTestMust(create(e, "nf-node", 0))(t)
				return publish(e, v, "ghost", ctrlTestRWO)
			}},
		{class: "already exists (other parameters)", want: codes.AlreadyExists, run: func(t *testing.T, e *errTestEnv) error {
			ctrlTestMust(create(e, "exists", ctrlTestGiB))(t)
			_, err := create(e, "exists", 2*ctrlTestGiB)
			return err
		}},
		{class: "invalid argument", want: codes.InvalidArgument, run: func(t *testing.T, e *errTestEnv) error {
			r := ctrlTestCreateReq("invalid", 0)
			r.Parameters = map[string]string{"colour": "blue"}
			_, err := e.cc.CreateVolume(ctx, r)
			return err
		}},
		{class: "out of range", want: codes.OutOfRange, run: func(t *testing.T, e *errTestEnv) error {
			r := ctrlTestCreateReq("oor", 10)
			r.CapacityRange.LimitBytes = 100
			_, err := e.cc.CreateVolume(ctx, r)
			return err
		}},
		{class: "failed precondition (delete a published volume)", want: codes.FailedPrecondition, run: func(t *testing.T, e *errTestEnv) error {
			v := ctrlTestMust(create(e, "published", 0))(t)
			if err := publish(e, v, "a", ctrlTestRWO); err != nil {
				t.Fatal(err)
			}
			_, err := e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.VolumeId})
			return err
		}},
		{class: "resource exhausted (node at its volume limit)", want: codes.ResourceExhausted,
			cfg: ctrlTestConfig{ctrlOpts: []rdscsi.ControllerOption{rdscsi.WithMaxVolumesPerNode(1)}},
			run: func(t *testing.T, e *errTestEnv) error {
				for _, name := range []string{"first", "second"} {
					v := ctrlTestMust(create(e, name, 0))(t)
					if err := publish(e, v, "a", ctrlTestRWO); err != nil {
						return err
					}
				}
				t.Fatal("a node took a volume over its limit")
				return nil
			}},
		{class: "aborted (bad token)", want: codes.Aborted, run: func(t *testing.T, e *errTestEnv) error {
			_, err := e.cc.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: "garbage"})
			return err
		}},
		{class: "unimplemented", want: codes.Unimplemented, cfg: ctrlTestConfig{noAttach: true}, run: func(t *testing.T, e *errTestEnv) error {
			v := ctrlTestMust(create(e, "unimpl", 0))(t)
			return publish(e, v, "a", ctrlTestRWO)
		}},
		{class: "unavailable (probe)", want: codes.Unavailable, run: func(t *testing.T, e *errTestEnv) error {
			e.rds.RefuseConnections(true)
			e.rds.DropConnections()
			_, err := e.ic.Probe(ctx, &csi.ProbeRequest{})
			return err
		}},
		// A refused login is a misconfiguration, not an outage: the probe
		// keeps rdsclient.ErrAuth's code so that no one waits for it.
		{class: "login refused (probe)", want: codes.FailedPrecondition, run: func(t *testing.T, e *errTestEnv) error {
			e.rds.RejectAuth(true)
			e.rds.DropConnections()
			_, err := e.ic.Probe(ctx, &csi.ProbeRequest{})
			return err
		}},

		// rdsclient's classes, from the fake device.
		{class: "rdsclient not found", want: codes.NotFound, run: func(t *testing.T, e *errTestEnv) error {
			_, err := e.cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: rdscsi.VolumeIDForName("none")})
			return err
		}},
		// A file another disk uses is FailedPrecondition, not this class:
		// TestOrphanCleanupSparesForeignDisks.
		{class: "rdsclient exists (the device insists the slot is taken)", want: codes.AlreadyExists, run: func(t *testing.T, e *errTestEnv) error {
			e.rds.Inject(rdstest.FailAlways(`^/disk add`, "failure: item with this name already exists"))
			_, err := create(e, "taken", 0)
			return err
		}},
		{class: "rdsclient no space", want: codes.ResourceExhausted,
			cfg: ctrlTestConfig{rdsOpts: []rdstest.Option{rdstest.WithPool("storage-pool", 8*ctrlTestMiB)}},
			run: func(t *testing.T, e *errTestEnv) error {
				_, err := create(e, "huge", 16*ctrlTestMiB)
				return err
			}},
		{class: "rdsclient invalid (the device rejects the syntax)", want: codes.InvalidArgument, run: func(t *testing.T, e *errTestEnv) error {
			e.rds.Inject(rdstest.FailAlways(`^/disk add`, "syntax error (line 1 column 10)"))
			_, err := create(e, "syntax", 0)
			return err
		}},
		{class: "rdsclient in use (an initiator is connected)", want: codes.FailedPrecondition, run: func(t *testing.T, e *errTestEnv) error {
			v := ctrlTestMust(create(e, "busy", 0))(t)
			if err := e.rds.ConnectInitiator(rdscsi.NQN(v.VolumeId)); err != nil {
				t.Fatal(err)
			}
			_, err := e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.VolumeId})
			return err
		}},
		{class: "rdsclient unavailable", want: codes.Unavailable, run: func(t *testing.T, e *errTestEnv) error {
			e.rds.RefuseConnections(true)
			e.rds.DropConnections()
			_, err := create(e, "down", 0)
			return err
		}},
		{class: "rdsclient closed", want: codes.Unavailable, run: func(t *testing.T, e *errTestEnv) error {
			e.client.Close()
			_, err := create(e, "closed", 0)
			return err
		}},
		{class: "rdsclient unexpected output", want: codes.Internal, run: func(t *testing.T, e *errTestEnv) error {
			e.rds.Inject(rdstest.FailAlways(`^/disk add`, "something nobody has seen before"))
			_, err := create(e, "weird", 0)
			return err
		}},
		// A timed-out command is also ErrUnavailable: the deadline wins.
		{class: "deadline exceeded (command timeout)", want: codes.DeadlineExceeded,
			cfg: ctrlTestConfig{clientOpts: []rdsclient.Option{rdsclient.WithCommandTimeout(200 * time.Millisecond), rdsclient.WithRetry(1, time.Millisecond)}},
			run: func(t *testing.T, e *errTestEnv) error {
				e.rds.Inject(rdstest.Hang(`^/disk add`))
				_, err := create(e, "hung", 0)
				return err
			}},
		// The CO gives up on a hung device: the call ends, and so does
		// the command on the device.
		{class: "canceled", want: codes.Canceled, run: func(t *testing.T, e *errTestEnv) error {
			e.rds.Inject(rdstest.Hang(`^/disk add`))
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			go func() {
				if e.rds.WaitCommands(cctx, `^/disk add`, 1) == nil {
					cancel()
				}
			}()
			_, err := e.cc.CreateVolume(cctx, ctrlTestCreateReq("given-up", 0))
			if werr := e.rds.WaitIdle(ctx); werr != nil {
				t.Fatal(werr)
			}
			return err
		}},

		// attach's classes.
		{class: "attach conflict", want: codes.FailedPrecondition, run: func(t *testing.T, e *errTestEnv) error {
			v := ctrlTestMust(create(e, "rwo", 0))(t)
			if err := publish(e, v, "a", ctrlTestRWO); err != nil {
				t.Fatal(err)
			}
			return publish(e, v, "b", ctrlTestRWO)
		}},
		{class: "attach migration limit", want: codes.FailedPrecondition, run: func(t *testing.T, e *errTestEnv) error {
			v := ctrlTestMust(create(e, "rwx", 0, rwx))(t)
			for _, n := range []string{"a", "b"} {
				if err := publish(e, v, n, rwx); err != nil {
					t.Fatal(err)
				}
			}
			return publish(e, v, "c", rwx)
		}},
		{class: "attach migration timed out", want: codes.FailedPrecondition, cfg: ctrlTestConfig{clock: migrationClock.Now}, run: func(t *testing.T, e *errTestEnv) error {
			r := ctrlTestCreateReq("rwx-timeout", 0, rwx)
			r.Parameters = map[string]string{"migrationTimeoutSeconds": "60"}
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
			// An instant before its deadline the migration is merely full;
			// at the deadline the next publish finds it timed out.
			migrationClock.Advance(time.Minute - time.Nanosecond)
			if err := publish(e, v, "d", rwx); status.Code(err) != codes.FailedPrecondition || ctrlTestErrContains(err, "timed out") {
				t.Fatalf("publish before the deadline: %v, want the migration limit", err)
			}
			migrationClock.Advance(time.Nanosecond)
			err := publish(e, v, "d", rwx)
			if !ctrlTestErrContains(err, "timed out") {
				t.Errorf("not a migration timeout: %v", err)
			}
			return err
		}},
		{class: "attach invalid (node ID too long)", want: codes.InvalidArgument, run: func(t *testing.T, e *errTestEnv) error {
			v := ctrlTestMust(create(e, "long-node", 0))(t)
			return publish(e, v, strings.Repeat("n", 5000), ctrlTestRWO)
		}},
		{class: "attach closed", want: codes.Unavailable, run: func(t *testing.T, e *errTestEnv) error {
			v := ctrlTestMust(create(e, "shut", 0))(t)
			e.manager.Close()
			return publish(e, v, "a", ctrlTestRWO)
		}},
		// Errors of no class are Internal.
		{class: "unclassified (the attachment store cannot write)", want: codes.Internal,
			cfg: ctrlTestConfig{store: func(s attach.Store) attach.Store {
				return attachtest.Wrap(s, func(_ context.Context, op attachtest.Op, _ string) error {
					if op == attachtest.OpPut {
						return &fs.PathError{Op: "write", Path: "attachments.log", Err: syscall.EIO}
					}
					return nil
				})
			}},
			run: func(t *testing.T, e *errTestEnv) error {
				v := ctrlTestMust(create(e, "no-store", 0))(t)
				return publish(e, v, "a", ctrlTestRWO)
			}},

		// The node's classes, from loop devices.
		{class: "device not ready (the new size does not show yet)", want: codes.Unavailable, node: true, run: func(t *testing.T, e *errTestEnv) error {
			v, target := errTestPublishBlock(t, e)
			_, err := e.nc.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: v.VolumeId, VolumePath: target,
				CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * v.CapacityBytes}})
			return err
		}},
		{class: "nvme not connected (the device went away)", want: codes.FailedPrecondition, node: true, run: func(t *testing.T, e *errTestEnv) error {
			v, target := errTestPublishBlock(t, e)
			if err := e.loop.Disconnect(ctx, rdscsi.NQN(v.VolumeId)); err != nil {
				t.Fatal(err)
			}
			_, err := e.nc.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: v.VolumeId, VolumePath: target})
			return err
		}},
	} {
		t.Run(tc.class, func(t *testing.T) {
			cfg := tc.cfg
			e := &errTestEnv{}
			if tc.node {
				nodeTestRequireLoop(t)
				var ns *rdscsi.NodeServer
				cfg.setup = func(ce *ctrlTestEnv) {
					e.loop = rdscsitest.NewLoopConnector(ce.rds)
					t.Cleanup(func() {
						if err := e.loop.Close(); err != nil {
							t.Errorf("detaching loop devices: %v", err)
						}
					})
					var err error
					ns, err = rdscsi.NewNodeServer("node-1", e.loop, rdscsi.WithStateDir(t.TempDir()))
					if err != nil {
						t.Fatal(err)
					}
				}
				cfg.register = func(r grpc.ServiceRegistrar) { ns.Register(r) }
			}
			e.ctrlTestEnv = newCtrlTestEnv(t, cfg)
			e.nc = csi.NewNodeClient(e.conn)
			err := tc.run(t, e)
			if got := status.Code(err); got != tc.want {
				t.Errorf("code %v, want %v (err: %v)", got, tc.want, err)
			}
		})
	}
}

// errTestPublishBlock creates a raw block volume, publishes it to node-1,
// stages it there and publishes it to a target path, which it returns
// with the volume. Cleanup unpublishes and unstages it.
func errTestPublishBlock(t *testing.T, e *errTestEnv) (*csi.Volume, string) {
	t.Helper()
	ctx := context.Background()
	vc := ctrlTestBlockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	v := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("staged", 16*ctrlTestMiB, vc)))(t).GetVolume()
	pub := ctrlTestMust(e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
		VolumeId: v.VolumeId, NodeId: "node-1", VolumeCapability: vc, VolumeContext: v.VolumeContext}))(t)
	dir := t.TempDir()
	staging, target := filepath.Join(dir, "staging"), filepath.Join(dir, "target")
	ctrlTestMust(e.nc.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: staging,
		VolumeCapability: vc, PublishContext: pub.PublishContext, VolumeContext: v.VolumeContext}))(t)
	// Runs before the loop devices are detached.
	t.Cleanup(func() {
		if _, err := e.nc.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.VolumeId, TargetPath: target}); err != nil {
			t.Errorf("unpublish: %v", err)
		}
		if _, err := e.nc.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: staging}); err != nil {
			t.Errorf("unstage: %v", err)
		}
	})
	ctrlTestMust(e.nc.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: staging,
		TargetPath: target, VolumeCapability: vc, PublishContext: pub.PublishContext, VolumeContext: v.VolumeContext}))(t)
	return v, target
}

func ctrlTestErrContains(err error, s string) bool {
	return err != nil && strings.Contains(status.Convert(err).Message(), s)
}

// TestStatus checks what Status does besides the table: nil stays nil, an
// error that already carries a status keeps it, the message is kept.
func TestStatus(t *testing.T) {
	if err := rdscsi.Status(nil); err != nil {
		t.Errorf("Status(nil) = %v", err)
	}
	if got := rdscsi.Code(nil); got != codes.OK {
		t.Errorf("Code(nil) = %v", got)
	}
	kept := status.Error(codes.PermissionDenied, "kept")
	if got := rdscsi.Status(kept); got != kept {
		t.Errorf("Status of a status error = %v, want it unchanged", got)
	}
	err := rdscsi.Status(rdscsi.ErrNotFound)
	if s := status.Convert(err); s.Code() != codes.NotFound || s.Message() != rdscsi.ErrNotFound.Error() {
		t.Errorf("Status(ErrNotFound) = %v", err)
	}
}
