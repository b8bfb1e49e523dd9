package rdscsi

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/srvlab/rds-csi/internal/durable"
)

// stageRecordVersion is written into every record; a record of another
// version is refused rather than misread.
const stageRecordVersion = 1

// stageRecord is what NodeStageVolume saw, kept per volume in the state
// directory. It never names the device node to use (that is resolved by
// NQN every time); it describes what the device was, so that a different
// device behind the same NQN is refused.
type stageRecord struct {
	Version     int      `json:"version"`
	VolumeID    string   `json:"volumeID"`
	NQN         string   `json:"nqn"`
	StagingPath string   `json:"stagingPath"`
	Block       bool     `json:"block"`
	FSType      string   `json:"fsType,omitempty"`
	FSUUID      string   `json:"fsUUID,omitempty"`
	MountFlags  []string `json:"mountFlags,omitempty"`
	ReadOnly    bool     `json:"readOnly,omitempty"`
	// CreatedStagingDir is set when stage created the staging directory,
	// so that unstage removes only what it created.
	CreatedStagingDir bool         `json:"createdStagingDir,omitempty"`
	Device            deviceRecord `json:"device"`
	// Targets are the paths this volume is published at.
	Targets  map[string]targetRecord `json:"targets,omitempty"`
	StagedAt time.Time               `json:"stagedAt"`
}

// deviceRecord identifies a block device independently of its name.
type deviceRecord struct {
	Path      string `json:"path"` // informational only, never reused
	Major     uint32 `json:"major"`
	Minor     uint32 `json:"minor"`
	SizeBytes int64  `json:"sizeBytes"`
	// Serial is a stable identity when the kernel offers one: the NVMe
	// WWID, or the backing file of a loop device.
	Serial string `json:"serial,omitempty"`
}

type targetRecord struct {
	ReadOnly bool   `json:"readOnly,omitempty"`
	Mode     string `json:"mode"` // CSI access mode name
}

// stageStore keeps stage records as <dir>/<volumeID>.json.
type stageStore struct {
	dir string
}

func (s stageStore) path(volumeID string) string {
	return filepath.Join(s.dir, volumeID+".json")
}

// load returns the record of volumeID, or nil when there is none.
func (s stageStore) load(volumeID string) (*stageRecord, error) {
	b, err := os.ReadFile(s.path(volumeID))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("rdscsi: reading stage record: %w", err)
	}
	var r stageRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, errorf(ErrFailedPrecondition, "stage record %s is corrupt: %v", s.path(volumeID), err)
	}
	if r.Version != stageRecordVersion || r.VolumeID != volumeID {
		return nil, errorf(ErrFailedPrecondition, "stage record %s has version %d for volume %q", s.path(volumeID), r.Version, r.VolumeID)
	}
	return &r, nil
}

// save writes r durably: temp file, fsync, rename, fsync of the directory.
func (s stageStore) save(r *stageRecord) error {
	r.Version = stageRecordVersion
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("rdscsi: encoding stage record: %w", err)
	}
	if err := durable.WriteFile(s.path(r.VolumeID), b, 0o600); err != nil {
		return fmt.Errorf("rdscsi: writing stage record: %w", err)
	}
	return nil
}

// remove deletes the record of volumeID; a missing record is success.
func (s stageStore) remove(volumeID string) error {
	if err := os.Remove(s.path(volumeID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rdscsi: removing stage record: %w", err)
	}
	if err := durable.SyncDir(s.dir); err != nil {
		return fmt.Errorf("rdscsi: removing stage record: %w", err)
	}
	return nil
}
