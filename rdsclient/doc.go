// Package rdsclient manages file-backed NVMe/TCP disks on a MikroTik ROSE
// Data Server (RDS) through the RouterOS command line over SSH.
//
// A Client keeps one SSH connection and runs every RouterOS command in its
// own exec session on it, at most WithMaxSessions at a time. A connection
// that drops is re-dialled by one goroutine while concurrent callers wait
// for it, so callers never manage connections themselves.
//
// Safety rules the Client enforces:
//
//   - Every value that reaches the console (slot, path, NQN, port, pool,
//     prefix) is validated against a strict pattern first; anything else is
//     rejected with ErrInvalid and nothing is sent.
//   - Every call obeys its context. A command that hangs is abandoned when
//     the context ends: its session is closed and, if it does not end
//     promptly, the connection is treated as broken. Calls whose context has
//     no deadline get the WithCommandTimeout default per command; every
//     dial is bounded by WithDialTimeout.
//   - Only transient transport faults are retried, with bounded, jittered
//     exponential backoff, and only for reads or for mutations that were
//     never sent. A mutation whose outcome is unknown (the connection
//     dropped after it was sent) is resolved by reading the state back,
//     never by repeating it blindly.
//   - Sizes are bytes in the API and are rounded up to a whole MiB
//     (RoundUpSize) before they are sent.
//   - ErrNotFound means a print succeeded and listed nothing. A print
//     that fails (failure text, syntax error, non-zero exit status) is an
//     error of another class, and DeleteDisk returns nil only once a print
//     has shown the disk absent.
//   - Every call sends the fewest commands that keep these rules: a
//     change is read back only when its answer cannot prove it
//     (rdsclient/docs/device.md, "Commands used"), calls that act on an
//     existing disk take it as the caller has read it, and concurrent
//     reads share prints (WithCoalescedReads).
//
// Errors wrap exactly one of the sentinels of this package (ErrNotFound,
// ErrExists, ...), so callers test them with errors.Is; failures reported by
// RouterOS are *CommandError values carrying the command and its output.
// Errors caused by the caller's context also wrap ctx.Err(), so
// errors.Is(err, context.DeadlineExceeded) holds for a timed-out call; they
// wrap ErrUnavailable as their class. A host key the RDS presents but
// Config.HostKeyCallback refuses is a *HostKeyError (ErrHostKey), a login
// it refuses an *AuthError (ErrAuth): both name what to change, are not
// ErrUnavailable and are never retried.
//
// What the client relies on in the RouterOS console (commands, output
// format, wrapping, digit groups, units, error texts, and what the fake
// invents) is written down in rdsclient/docs/device.md.
//
// The rdstest subpackage provides a fake RDS for tests.
package rdsclient
