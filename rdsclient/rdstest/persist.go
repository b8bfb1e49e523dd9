package rdstest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateFile holds the disk table in the data directory, so that a Server
// started on the directory of an earlier one has the same disks, as a
// device keeps its disks across reboots. It lives beside the pools, not
// in one, so /file print never shows it.
const stateFile = ".rdstest-state.json"

const stateVersion = 1

type savedState struct {
	Version int         `json:"version"`
	Disks   []savedDisk `json:"disks"`
}

// savedDisk is one disk other than a pool's own partition (pools come
// from the options). Size is the last known size: a file disk reads its
// size from its backing file and falls back to Size when the file is gone.
type savedDisk struct {
	Slot     string `json:"slot"`
	Type     string `json:"type"`
	FilePath string `json:"file-path,omitempty"`
	Size     int64  `json:"size"`
	Export   bool   `json:"nvme-tcp-export"`
	Port     int    `json:"nvme-tcp-server-port,omitempty"`
	NQN      string `json:"nvme-tcp-server-nqn,omitempty"`
}

// save writes the disk table to a temp file and renames it over the old
// one, so that a process killed at any moment leaves the old table or the
// new one. The caller holds st.mu. It does not fsync: the fake simulates a
// device for tests and simulation runs, which must survive a killed
// process, not a power cut, and an fsync per command would make the fake
// slower than the code it tests.
func (st *state) save() error {
	if !st.persist {
		return nil
	}
	s := savedState{Version: stateVersion, Disks: []savedDisk{}}
	for _, d := range st.disks {
		if d.pool != nil {
			continue
		}
		s.Disks = append(s.Disks, savedDisk{
			Slot: d.slot, Type: d.typ, FilePath: d.filePath, Size: st.fileSize(d),
			Export: d.export, Port: d.port, NQN: d.nqn,
		})
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	final := filepath.Join(st.dataDir, stateFile)
	tmp := final + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// load reads the disk table saved by an earlier Server, if any. It is
// strict: a table it cannot trust is an error, never silently dropped.
// A file disk whose backing file is missing is kept (and reported in
// missing) so that it can still be printed and removed.
func (st *state) load() (missing []string, err error) {
	b, err := os.ReadFile(filepath.Join(st.dataDir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("rdstest: read state: %w", err)
	}
	var s savedState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("rdstest: state %s: %w", stateFile, err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("rdstest: state %s: version %d, want %d", stateFile, s.Version, stateVersion)
	}
	for _, sd := range s.Disks {
		d := &disk{slot: sd.Slot, typ: sd.Type, filePath: sd.FilePath, size: sd.Size,
			export: sd.Export, port: sd.Port, nqn: sd.NQN}
		switch {
		case !validText(d.slot) || st.diskBySlot(d.slot) != nil:
			return nil, fmt.Errorf("rdstest: state %s: slot %q empty, invalid or duplicate", stateFile, d.slot)
		case d.typ != "file" && d.typ != "nvme" && d.typ != "partition":
			return nil, fmt.Errorf("rdstest: state %s: disk %q has type %q", stateFile, d.slot, d.typ)
		case d.typ == "file" && !validText(d.filePath):
			return nil, fmt.Errorf("rdstest: state %s: file disk %q has no file path", stateFile, d.slot)
		case d.size < 0:
			return nil, fmt.Errorf("rdstest: state %s: disk %q has size %d", stateFile, d.slot, d.size)
		case d.export && (d.port < 1 || d.port > 65535 || !validText(d.nqn) || st.nqnInUse(d.nqn)):
			return nil, fmt.Errorf("rdstest: state %s: disk %q has export port %d nqn %q", stateFile, d.slot, d.port, d.nqn)
		}
		if d.typ == "file" {
			if fi, err := os.Stat(st.hostPath(d.filePath)); err != nil || !fi.Mode().IsRegular() {
				missing = append(missing, d.slot)
			}
		}
		st.disks = append(st.disks, d)
	}
	return missing, nil
}
