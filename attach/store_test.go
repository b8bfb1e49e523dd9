package attach_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/attach/attachtest"
)

func TestMemStoreConformance(t *testing.T) {
	attachtest.TestStore(t, func(*testing.T) attach.Store { return attach.NewMemStore() })
}

func TestFileStoreConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []attach.FileOption
	}{
		{"group-commit", nil},
		{"fsync-per-op", []attach.FileOption{attach.WithGroupCommit(false)}},
		// Compacts after nearly every write.
		{"compacting", []attach.FileOption{attach.WithCompaction(2, 0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeak(t)
			dir := t.TempDir()
			attachtest.TestStore(t, func(t *testing.T) attach.Store {
				// The same subtest reopens the same file.
				name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
				return openFileStore(t, filepath.Join(dir, name+".log"), tc.opts...)
			}, attachtest.Durable())
		})
	}
}
