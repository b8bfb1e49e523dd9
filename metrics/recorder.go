package metrics

import (
	"context"
	"time"
)

// Recorder receives what the other packages report. Implementations must be
// safe for concurrent use and must not block. Label-like string arguments
// always come from small fixed sets (never volume IDs).
//
// Embed Noop in your own Recorder so that it keeps compiling when methods
// are added.
type Recorder interface {
	// RPC reports one CSI RPC: method is the short method name
	// ("CreateVolume"), code the gRPC code name ("OK", "NotFound").
	RPC(ctx context.Context, method, code string, d time.Duration)
	// RDSCommand reports one RouterOS command ("disk add") and its status
	// ("ok", "not_found", "unavailable", ...).
	RDSCommand(ctx context.Context, command, status string, d time.Duration)
	// RDSConnectionState reports the SSH connection to address as up or
	// down.
	RDSConnectionState(ctx context.Context, address string, connected bool)
	// RDSReconnect reports one re-dial, status "ok" or "error".
	RDSReconnect(ctx context.Context, status string)
	// NVMeConnect reports one NVMe/TCP connect, status "ok" or "error".
	NVMeConnect(ctx context.Context, status string, d time.Duration)
	// NVMeDisconnect reports one NVMe/TCP disconnect.
	NVMeDisconnect(ctx context.Context, status string, d time.Duration)
	// MountOperation reports a "format", "mount", "unmount" or "resize",
	// status "ok" or "error".
	MountOperation(ctx context.Context, operation, status string, d time.Duration)
	// StaleMount reports one stale mount detected.
	StaleMount(ctx context.Context)
	// AttachmentConflict reports one refused attachment.
	AttachmentConflict(ctx context.Context)
	// Migration reports a migration event: "started", "success" (one side
	// detached before the timeout) or "timeout".
	Migration(ctx context.Context, result string)
	// Reconcile reports n attachments handled by a reconcile, by action
	// ("cleared", "kept", "error").
	Reconcile(ctx context.Context, action string, n int)
}

// Noop is a Recorder that does nothing. Its zero value is ready to use.
type Noop struct{}

var _ Recorder = Noop{}

// RPC does nothing.
func (Noop) RPC(context.Context, string, string, time.Duration) {}

// RDSCommand does nothing.
func (Noop) RDSCommand(context.Context, string, string, time.Duration) {}

// RDSConnectionState does nothing.
func (Noop) RDSConnectionState(context.Context, string, bool) {}

// RDSReconnect does nothing.
func (Noop) RDSReconnect(context.Context, string) {}

// NVMeConnect does nothing.
func (Noop) NVMeConnect(context.Context, string, time.Duration) {}

// NVMeDisconnect does nothing.
func (Noop) NVMeDisconnect(context.Context, string, time.Duration) {}

// MountOperation does nothing.
func (Noop) MountOperation(context.Context, string, string, time.Duration) {}

// StaleMount does nothing.
func (Noop) StaleMount(context.Context) {}

// AttachmentConflict does nothing.
func (Noop) AttachmentConflict(context.Context) {}

// Migration does nothing.
func (Noop) Migration(context.Context, string) {}

// Reconcile does nothing.
func (Noop) Reconcile(context.Context, string, int) {}
