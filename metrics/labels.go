package metrics

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// otherValue replaces a label value that is not in its label's set, so a
// buggy caller cannot create unbounded series.
const otherValue = "other"

// Known label values. Anything else becomes "other".
var (
	// csiMethods are the RPC names of CSI v1.13 (all services).
	csiMethods = []string{
		// Identity
		"GetPluginInfo", "GetPluginCapabilities", "Probe",
		// Controller
		"CreateVolume", "DeleteVolume", "ControllerPublishVolume",
		"ControllerUnpublishVolume", "ValidateVolumeCapabilities",
		"ListVolumes", "ControllerListVolumeHealth", "ControllerGetVolumeHealth",
		"GetCapacity", "ControllerGetCapabilities", "CreateSnapshot",
		"DeleteSnapshot", "ListSnapshots", "GetSnapshot",
		"ControllerExpandVolume", "ControllerGetVolume", "ControllerModifyVolume",
		// GroupController
		"GroupControllerGetCapabilities", "CreateVolumeGroupSnapshot",
		"DeleteVolumeGroupSnapshot", "GetVolumeGroupSnapshot",
		// SnapshotMetadata
		"GetMetadataAllocated", "GetMetadataDelta",
		// Node
		"NodeStageVolume", "NodeUnstageVolume", "NodePublishVolume",
		"NodeUnpublishVolume", "NodeGetVolumeStats", "NodeGetVolumeHealth",
		"NodeGetStorageHealth", "NodeExpandVolume", "NodeGetCapabilities",
		"NodeGetInfo",
	}
	// grpcCodes are the names google.golang.org/grpc/codes.Code.String
	// returns for the 17 defined codes.
	grpcCodes = []string{
		"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded",
		"NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted",
		"FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
		"Internal", "Unavailable", "DataLoss", "Unauthenticated",
	}
	// rdsStatuses are the statuses rdsclient.Observer documents.
	rdsStatuses = []string{
		"ok", "not_found", "exists", "no_space", "invalid", "in_use",
		"unavailable", "timeout", "host_key_mismatch", "auth_failed", "error",
	}
	okError          = []string{"ok", "error"}
	mountOperations  = []string{"format", "mount", "unmount", "resize"}
	reconcileActions = []string{"cleared", "kept", "error"}
	migrationResults = []string{"success", "timeout"}
)

// Bounds of the open label sets (RouterOS commands, RDS addresses): values
// must look right and only the first few distinct ones are kept.
const (
	maxCommands   = 64
	maxCommandLen = 64
	maxAddresses  = 16
	maxAddressLen = 128
)

// label maps caller-supplied values onto a bounded set. A fixed label
// accepts only the listed values; an open label accepts up to max distinct
// values that pass valid. The first value replaced by "other" is logged once.
type label struct {
	name  string
	fixed map[string]struct{}

	valid func(string) bool
	max   int
	seen  sync.Map // string -> struct{}; read lock-free on the hot path
	mu    sync.Mutex
	n     int // guarded by mu

	logger *slog.Logger
	warned atomic.Bool
}

func fixedLabel(logger *slog.Logger, name string, values []string) *label {
	m := make(map[string]struct{}, len(values))
	for _, v := range values {
		m[v] = struct{}{}
	}
	return &label{name: name, fixed: m, logger: logger}
}

func openLabel(logger *slog.Logger, name string, max int, valid func(string) bool) *label {
	return &label{name: name, valid: valid, max: max, logger: logger}
}

// value returns v if it belongs to the label's set, otherwise "other".
func (l *label) value(v string) string {
	if l.fixed != nil {
		if _, ok := l.fixed[v]; ok {
			return v
		}
		return l.reject(v, "unknown value")
	}
	if _, ok := l.seen.Load(v); ok {
		return v
	}
	if !l.valid(v) {
		return l.reject(v, "malformed value")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen.Load(v); ok {
		return v
	}
	if l.n >= l.max {
		return l.reject(v, "too many distinct values")
	}
	l.seen.Store(v, struct{}{})
	l.n++
	return v
}

func (l *label) reject(v, why string) string {
	if l.warned.CompareAndSwap(false, true) {
		const maxLogged = 80
		if len(v) > maxLogged {
			v = v[:maxLogged]
		}
		l.logger.Warn("metrics: label value replaced by \"other\"; further replacements are not logged",
			"label", l.name, "value", v, "reason", why)
	}
	return otherValue
}

// validCommand accepts a RouterOS menu path and verb such as "disk add" or
// "interface nvme-tcp print": lower-case words separated by single spaces,
// never arguments (which carry '=', quotes, digits or slashes).
func validCommand(s string) bool {
	if s == "" || len(s) > maxCommandLen || s[0] == ' ' || s[len(s)-1] == ' ' || strings.Contains(s, "  ") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && c != '-' && c != ' ' {
			return false
		}
	}
	return true
}

// validAddress accepts a host name, IPv4 or bracketed IPv6 address,
// optionally with a port.
func validAddress(s string) bool {
	if s == "" || len(s) > maxAddressLen || !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '-', c == ':', c == '[', c == ']', c == '%', c == '_':
		default:
			return false
		}
	}
	return true
}

// shortMethod strips a full gRPC method ("/csi.v1.Node/NodeGetInfo") down
// to the RPC name, so either form can be passed.
func shortMethod(m string) string {
	if i := strings.LastIndexByte(m, '/'); i >= 0 {
		return m[i+1:]
	}
	return m
}
