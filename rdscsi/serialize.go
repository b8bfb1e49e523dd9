package rdscsi

import (
	"context"
	"strings"
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// VolumeLocks is a table of in-flight operations keyed by volume or
// snapshot ID. It never blocks: a second operation on a held key fails at
// once with ErrAborted, which a CO retries with backoff. There is no
// global lock across RPCs; the table's mutex guards only the map.
type VolumeLocks struct {
	mu   sync.Mutex
	held map[string]struct{}
}

// NewVolumeLocks returns an empty table.
func NewVolumeLocks() *VolumeLocks { return &VolumeLocks{held: map[string]struct{}{}} }

// TryLock takes every key or none. It returns the function that releases
// them, or ok false when one of them is held.
func (l *VolumeLocks) TryLock(keys ...string) (unlock func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if _, busy := l.held[k]; busy {
			return nil, false
		}
	}
	for _, k := range keys {
		l.held[k] = struct{}{}
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, k := range keys {
			delete(l.held, k)
		}
	}, true
}

// Held reports whether key is locked now.
func (l *VolumeLocks) Held(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.held[key]
	return ok
}

// Len returns the number of keys held.
func (l *VolumeLocks) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.held)
}

// keyedMutex is a set of blocking locks keyed by string, for short
// critical sections on one key; entries are dropped when unused.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

// lock blocks until key is free and returns its release.
func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedEntry{}
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// SerializeInterceptor returns an interceptor that lets at most one RPC
// at a time operate on a volume or snapshot, and the lock table it uses.
// A concurrent call on a busy key gets Aborted. Keys are: the volume ID a
// CreateVolume name maps to plus its content source, volume_id, the snapshot ID a CreateSnapshot
// name maps to plus its source volume, and snapshot_id. Listing RPCs take
// no lock.
func SerializeInterceptor() (grpc.UnaryServerInterceptor, *VolumeLocks) {
	locks := NewVolumeLocks()
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
	}, locks
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
