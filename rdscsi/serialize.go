package rdscsi

import (
	"context"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/srvlab/rds-csi/internal/keylock"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// SerializeInterceptor returns an interceptor that lets at most one RPC
// at a time operate on a volume or snapshot. It never waits: a concurrent
// call on a busy key gets Aborted at once, which a CO retries with
// backoff. Keys are: the volume ID a CreateVolume name maps to plus its
// content source, volume_id, the snapshot ID a CreateSnapshot name maps to
// plus its source volume, and snapshot_id. Listing RPCs take no lock.
func SerializeInterceptor() grpc.UnaryServerInterceptor {
	return serializeInterceptor(new(keylock.Set))
}

// serializeInterceptor is SerializeInterceptor over a given lock set, so
// that a test can hold keys.
func serializeInterceptor(locks *keylock.Set) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		keys := lockKeys(info.FullMethod, req)
		if len(keys) == 0 {
			return handler(ctx, req)
		}
		unlock, ok := locks.TryLock(keys...)
		if !ok {
			return nil, Status(errorf(ErrAborted, "an operation on %s is already in progress", strings.Join(keys, ", ")))
		}
		defer unlock()
		return handler(ctx, req)
	}
}

// lockKeys returns the IDs an RPC operates on. Keys are the raw IDs even
// when malformed: two calls naming the same bad ID still serialize.
func lockKeys(method string, req any) []string {
	switch r := req.(type) {
	case *csi.CreateVolumeRequest:
		if r.GetName() == "" {
			return nil
		}
		keys := []string{VolumeIDForName(r.GetName())}
		// A clone or restore also holds its source, so the source is not
		// deleted or resized while it is copied.
		src := r.GetVolumeContentSource()
		if id := src.GetVolume().GetVolumeId() + src.GetSnapshot().GetSnapshotId(); id != "" && id != keys[0] {
			keys = append(keys, id)
		}
		return keys
	case *csi.CreateSnapshotRequest:
		var keys []string
		if r.GetName() != "" {
			keys = append(keys, SnapshotIDForName(r.GetName()))
		}
		if v := r.GetSourceVolumeId(); v != "" {
			keys = append(keys, v)
		}
		return keys
	case *csi.DeleteSnapshotRequest:
		return nonEmpty(r.GetSnapshotId())
	case *csi.GetSnapshotRequest:
		return nonEmpty(r.GetSnapshotId())
	case *csi.ListVolumesRequest, *csi.ListSnapshotsRequest, *csi.ControllerListVolumeHealthRequest:
		return nil
	case interface{ GetVolumeId() string }:
		// Every other controller and node RPC naming a volume.
		return nonEmpty(r.GetVolumeId())
	case proto.Message:
		// A request type this package does not know yet (a newer spec):
		// lock on a volume_id field if it has one.
		if strings.Contains(method, "/List") {
			return nil
		}
		m := r.ProtoReflect()
		if fd := m.Descriptor().Fields().ByName("volume_id"); fd != nil && fd.Kind() == protoreflect.StringKind && fd.Cardinality() != protoreflect.Repeated {
			return nonEmpty(m.Get(fd).String())
		}
	}
	return nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
