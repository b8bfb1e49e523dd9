package attachtest

import (
	"context"
	"strconv"

	"github.com/srvlab/rds-csi/attach"
)

// Op names a Store method, for an Injector.
type Op int

// Store methods an Injector sees.
const (
	OpLoad Op = iota + 1
	OpPut
	OpDelete
	OpReplace
)

// String returns the method name.
func (o Op) String() string {
	switch o {
	case OpLoad:
		return "Load"
	case OpPut:
		return "Put"
	case OpDelete:
		return "Delete"
	case OpReplace:
		return "Replace"
	}
	return "Op(" + strconv.Itoa(int(o)) + ")"
}

// Injector decides the fate of one Store call before it reaches the
// wrapped Store: a non-nil error fails the call without touching the
// Store; blocking delays it. volumeID is empty for Load and Replace.
type Injector func(ctx context.Context, op Op, volumeID string) error

// Wrap returns a Store that consults inject before every Load, Put, Delete
// and Replace of s, to simulate failing or slow storage. Close passes
// through.
func Wrap(s attach.Store, inject Injector) attach.Store {
	return &faultStore{s: s, inject: inject}
}

type faultStore struct {
	s      attach.Store
	inject Injector
}

func (f *faultStore) Load(ctx context.Context) ([]attach.Attachment, error) {
	if err := f.inject(ctx, OpLoad, ""); err != nil {
		return nil, err
	}
	return f.s.Load(ctx)
}

func (f *faultStore) Put(ctx context.Context, a attach.Attachment) error {
	if err := f.inject(ctx, OpPut, a.VolumeID); err != nil {
		return err
	}
	return f.s.Put(ctx, a)
}

func (f *faultStore) Delete(ctx context.Context, volumeID string) error {
	if err := f.inject(ctx, OpDelete, volumeID); err != nil {
		return err
	}
	return f.s.Delete(ctx, volumeID)
}

func (f *faultStore) Replace(ctx context.Context, as []attach.Attachment) error {
	if err := f.inject(ctx, OpReplace, ""); err != nil {
		return err
	}
	return f.s.Replace(ctx, as)
}

func (f *faultStore) Close() error { return f.s.Close() }
