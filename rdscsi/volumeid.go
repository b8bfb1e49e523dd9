package rdscsi

import (
	"path"
	"strings"

	"github.com/google/uuid"
)

// Volume and snapshot IDs are RDS slots: a fixed prefix and a lowercase
// UUID. Nothing else a CO sends is ever placed into a command: names are
// hashed into IDs, and IDs are checked against this exact shape first.
const (
	volumePrefix   = "pvc-"
	snapshotPrefix = "snap-"
	// NQNPrefix is prepended to a volume ID to form its NVMe subsystem
	// NQN.
	NQNPrefix = "nqn.2000-02.com.mikrotik:"
	// fileSuffix ends every backing file name.
	fileSuffix = ".img"
	// fromInfix separates a copy's own ID from the ID of its source in a
	// backing file name: RouterOS keeps no lineage, so the file name
	// does.
	fromInfix = ".from-"
	// atInfix precedes a snapshot's creation time (Unix seconds) in its
	// backing file name.
	atInfix = ".at-"
)

// Name-based UUIDs (RFC 9562 version 5) under fixed namespaces, so the
// same CO name always maps to the same slot, across restarts and
// replicas, and volume and snapshot names never collide.
var (
	volumeNamespace   = uuid.UUID{0x6b, 0x1e, 0x3c, 0x52, 0x0f, 0x4a, 0x4d, 0x57, 0x9b, 0x3f, 0x52, 0x64, 0x73, 0x2d, 0x63, 0x73}
	snapshotNamespace = uuid.UUID{0x6b, 0x1e, 0x3c, 0x52, 0x0f, 0x4a, 0x4d, 0x57, 0x9b, 0x3f, 0x52, 0x64, 0x73, 0x2d, 0x73, 0x6e}
)

// nameUUID returns the version-5 UUID of name in namespace ns, in its
// lowercase 8-4-4-4-12 text form.
func nameUUID(ns uuid.UUID, name string) string {
	return uuid.NewSHA1(ns, []byte(name)).String()
}

// isUUID reports whether s is a lowercase 8-4-4-4-12 hex UUID.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// VolumeIDForName returns the volume ID CreateVolume uses for a CO volume
// name: the name itself when it already is "pvc-<lowercase uuid>",
// otherwise "pvc-" and a UUID derived from the name.
func VolumeIDForName(name string) string {
	if IsVolumeID(name) {
		return name
	}
	return volumePrefix + nameUUID(volumeNamespace, name)
}

// SnapshotIDForName returns the snapshot ID CreateSnapshot uses for a CO
// snapshot name: "snap-" and a UUID derived from the name.
func SnapshotIDForName(name string) string {
	return snapshotPrefix + nameUUID(snapshotNamespace, name)
}

// IsVolumeID reports whether id has the exact shape of a volume ID of
// this driver. Anything else is treated as a volume that does not exist.
func IsVolumeID(id string) bool {
	return strings.HasPrefix(id, volumePrefix) && isUUID(id[len(volumePrefix):])
}

// IsSnapshotID reports whether id has the exact shape of a snapshot ID of
// this driver.
func IsSnapshotID(id string) bool {
	return strings.HasPrefix(id, snapshotPrefix) && isUUID(id[len(snapshotPrefix):])
}

// NQN returns the NVMe subsystem NQN of a volume.
func NQN(volumeID string) string { return NQNPrefix + volumeID }

// volumeFilePath returns the backing file of a volume: <dir>/<id>.img,
// or <dir>/<id>.from-<source>.img for a clone or a restored snapshot.
func volumeFilePath(dir, id, source string) string {
	if source == "" {
		return path.Join(dir, id+fileSuffix)
	}
	return path.Join(dir, id+fromInfix+source+fileSuffix)
}

// parsedFile is what a backing file name of ours tells.
type parsedFile struct {
	dir    string // the directory, without trailing slash
	id     string // the slot
	source string // the source slot of a copy, "" for a blank volume
	at     int64  // creation time of a snapshot, Unix seconds
	hasAt  bool
}

// parseFilePath splits a backing file path written by this package. ok is
// false for any other name, so a foreign disk is never misread.
func parseFilePath(p string) (f parsedFile, ok bool) {
	dir, base := path.Split(p)
	if dir == "" || !strings.HasSuffix(base, fileSuffix) {
		return f, false
	}
	f.dir = strings.TrimSuffix(dir, "/")
	if f.dir != path.Clean(f.dir) || !strings.HasPrefix(f.dir, "/") || f.dir == "/" {
		// We write clean paths below a pool, never at the root.
		return f, false
	}
	rest := strings.TrimSuffix(base, fileSuffix)
	if i := strings.Index(rest, atInfix); i >= 0 {
		sec, ok := parseUnix(rest[i+len(atInfix):])
		if !ok {
			return f, false
		}
		f.at, f.hasAt = sec, true
		rest = rest[:i]
	}
	if i := strings.Index(rest, fromInfix); i >= 0 {
		f.source = rest[i+len(fromInfix):]
		rest = rest[:i]
		if !IsVolumeID(f.source) && !IsSnapshotID(f.source) {
			return f, false
		}
	}
	f.id = rest
	switch {
	case IsVolumeID(f.id):
		// A volume has no creation time in its name.
		return f, !f.hasAt
	case IsSnapshotID(f.id):
		// A snapshot always records its source volume and time.
		return f, f.hasAt && IsVolumeID(f.source)
	}
	return f, false
}

// parseUnix parses a non-negative decimal number of seconds.
func parseUnix(s string) (int64, bool) {
	if s == "" || len(s) > 12 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
