package attach

import (
	"errors"
	"strconv"
	"time"
)

// Mode is the kind of attachment a volume has.
type Mode int

const (
	// Exclusive allows one node per volume (RWO and single-node modes).
	Exclusive Mode = iota + 1
	// Migratable allows up to two nodes at once, for the duration of a
	// live migration (RWX raw block, KubeVirt).
	Migratable
)

// String returns "exclusive", "migratable" or "Mode(n)".
func (m Mode) String() string {
	switch m {
	case Exclusive:
		return "exclusive"
	case Migratable:
		return "migratable"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// DefaultMigrationTimeout applies when a Request sets none.
const DefaultMigrationTimeout = 5 * time.Minute

// Request asks for a volume to be attached to a node.
type Request struct {
	VolumeID string
	NodeID   string
	Mode     Mode
	// MigrationTimeout bounds a migration started by this request
	// (Migratable only). Zero means DefaultMigrationTimeout.
	MigrationTimeout time.Duration
}

// Attachment is the state of one volume. Values returned by a Manager are
// copies; changing them changes nothing in the Manager.
type Attachment struct {
	VolumeID string
	Mode     Mode
	// Nodes holds one node, or two while a migration runs, in attach
	// order.
	Nodes []string
	// MigrationStarted is when the second node attached; zero when no
	// migration runs.
	MigrationStarted time.Time
	// MigrationTimeout is the timeout of the running migration.
	MigrationTimeout time.Duration
}

// Counts summarises the Manager's state. It is maintained incrementally so
// that reading it is O(1).
type Counts struct {
	// Volumes is the number of volumes attached to at least one node.
	Volumes int
	// NodeAttachments is the number of (volume, node) pairs; a migrating
	// volume counts twice.
	NodeAttachments int
	// Migrations is the number of volumes attached to two nodes.
	Migrations int
	// TimedOutMigrations is the number of migrations past their timeout.
	TimedOutMigrations int
}

// Sentinel errors.
var (
	// ErrConflict: the volume is attached elsewhere exclusively, or with
	// another mode.
	ErrConflict = errors.New("attach: volume attached to another node")
	// ErrMigrationLimit: a migratable volume is already on two nodes.
	ErrMigrationLimit = errors.New("attach: migratable volume already attached to two nodes")
	// ErrMigrationTimedOut: the running migration passed its timeout; no
	// node may join until one side detaches.
	ErrMigrationTimedOut = errors.New("attach: migration timed out")
	// ErrInvalid: an empty or over-long ID, an unknown mode, a negative
	// timeout, or an Attachment that contradicts itself.
	ErrInvalid = errors.New("attach: invalid argument")
	// ErrClosed: the Manager or Store was closed.
	ErrClosed = errors.New("attach: closed")
	// ErrLocked: the FileStore's file is held by another process or by
	// another FileStore in this process.
	ErrLocked = errors.New("attach: store file locked by another owner")
	// ErrCorrupt: the FileStore's log has a damaged record followed by
	// valid ones, so cutting it off would drop acknowledged attachments.
	// The file is left as it is; FileStore describes the ways out.
	ErrCorrupt = errors.New("attach: store log corrupt")
)
