package attach

import (
	"strconv"
	"time"
)

// EventKind says what happened to an attachment.
type EventKind int

const (
	// EventAttached: a node was attached to a volume.
	EventAttached EventKind = iota + 1
	// EventDetached: a node was detached from a volume by Detach.
	EventDetached
	// EventConflict: an attachment was refused; Err says why
	// (ErrConflict, ErrMigrationLimit or ErrMigrationTimedOut).
	EventConflict
	// EventMigrationStarted: a second node joined a migratable volume.
	EventMigrationStarted
	// EventMigrationCompleted: a migrating volume went back to one node
	// (or none). TimedOut says whether it had passed its timeout.
	EventMigrationCompleted
	// EventMigrationTimedOut: a running migration passed its timeout. It
	// fires once per migration, from whichever of Attach, Detach, Counts
	// or Run notices first.
	EventMigrationTimedOut
	// EventReconciled: Reconcile removed a node that no longer exists
	// from a volume.
	EventReconciled
)

// String returns a short lower-case name such as "migration_started".
func (k EventKind) String() string {
	switch k {
	case EventAttached:
		return "attached"
	case EventDetached:
		return "detached"
	case EventConflict:
		return "conflict"
	case EventMigrationStarted:
		return "migration_started"
	case EventMigrationCompleted:
		return "migration_completed"
	case EventMigrationTimedOut:
		return "migration_timed_out"
	case EventReconciled:
		return "reconciled"
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event reports one change, or one refusal, to an observer.
type Event struct {
	Kind     EventKind
	VolumeID string
	// NodeID is the node attached, detached, refused or cleared; for
	// migration events it is the node that joined (started, timed out) or
	// left (completed).
	NodeID string
	// Mode is the volume's mode (the requested mode for a conflict).
	Mode Mode
	// Time is the Manager's clock when the event happened.
	Time time.Time
	// Elapsed is how long the migration has run (migration events only).
	Elapsed time.Duration
	// TimedOut reports, for EventMigrationCompleted, that the migration
	// had passed its timeout before it ended.
	TimedOut bool
	// Err is the refusal, for EventConflict. It wraps one of the
	// sentinel errors.
	Err error
}
