package attach

import (
	"fmt"
	"time"
)

// maxIDLen bounds volume and node IDs; CSI IDs are far shorter.
const maxIDLen = 4096

func validateIDs(volumeID, nodeID string) error {
	switch {
	case volumeID == "":
		return fmt.Errorf("attach: empty volume ID: %w", ErrInvalid)
	case nodeID == "":
		return fmt.Errorf("attach: empty node ID: %w", ErrInvalid)
	case len(volumeID) > maxIDLen || len(nodeID) > maxIDLen:
		return fmt.Errorf("attach: ID longer than %d bytes: %w", maxIDLen, ErrInvalid)
	}
	return nil
}

func validateRequest(req Request) error {
	if err := validateIDs(req.VolumeID, req.NodeID); err != nil {
		return err
	}
	if req.Mode != Exclusive && req.Mode != Migratable {
		return fmt.Errorf("attach: unknown mode %d: %w", int(req.Mode), ErrInvalid)
	}
	if req.MigrationTimeout < 0 {
		return fmt.Errorf("attach: negative migration timeout %s: %w", req.MigrationTimeout, ErrInvalid)
	}
	return nil
}

// normalizeAll checks a whole state and returns normalised copies: UTC
// times, a start time of now and the default timeout for migrations that
// lack them.
func normalizeAll(as []Attachment, now time.Time) ([]Attachment, error) {
	out := make([]Attachment, 0, len(as))
	seen := make(map[string]bool, len(as))
	for _, a := range as {
		n, err := normalize(a, now)
		if err != nil {
			return nil, err
		}
		if seen[n.VolumeID] {
			return nil, fmt.Errorf("attach: volume %q listed twice: %w", n.VolumeID, ErrInvalid)
		}
		seen[n.VolumeID] = true
		out = append(out, n)
	}
	return out, nil
}

func normalize(a Attachment, now time.Time) (Attachment, error) {
	bad := func(why string) (Attachment, error) {
		return Attachment{}, fmt.Errorf("attach: volume %q: %s: %w", a.VolumeID, why, ErrInvalid)
	}
	if a.VolumeID == "" || len(a.VolumeID) > maxIDLen {
		return bad("empty or over-long volume ID")
	}
	if a.Mode != Exclusive && a.Mode != Migratable {
		return bad(fmt.Sprintf("unknown mode %d", int(a.Mode)))
	}
	switch len(a.Nodes) {
	case 1:
		if !a.MigrationStarted.IsZero() || a.MigrationTimeout != 0 {
			return bad("migration fields set with one node")
		}
	case 2:
		if a.Mode != Migratable {
			return bad("two nodes on an exclusive volume")
		}
		if a.Nodes[0] == a.Nodes[1] {
			return bad("node listed twice")
		}
	default:
		return bad(fmt.Sprintf("%d nodes", len(a.Nodes)))
	}
	for _, n := range a.Nodes {
		if n == "" || len(n) > maxIDLen {
			return bad("empty or over-long node ID")
		}
	}
	out := cloneAttachment(a)
	if len(out.Nodes) == 2 {
		switch {
		case out.MigrationTimeout < 0:
			return bad("negative migration timeout")
		case out.MigrationTimeout == 0:
			out.MigrationTimeout = DefaultMigrationTimeout
		}
		if out.MigrationStarted.IsZero() {
			out.MigrationStarted = now
		}
		if !time.Unix(0, out.MigrationStarted.UnixNano()).Equal(out.MigrationStarted) {
			return bad("migration start out of range")
		}
		out.MigrationStarted = out.MigrationStarted.Round(0).UTC()
	}
	return out, nil
}
