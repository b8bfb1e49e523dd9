// Package rdstest provides an in-process fake ROSE Data Server (RDS) for
// tests, as net/http/httptest does for HTTP.
//
// A Server is a real SSH server on 127.0.0.1 that accepts public-key logins
// for "admin" (console flags such as "admin+c250w" allowed) and runs one
// RouterOS console command per exec session. It implements the subset of
// the console a CSI driver uses — /disk add|print|set|remove|monitor-traffic,
// /file print|remove, /system identity|resource print — and prints exactly
// what a device prints: wrapped print detail with CRLF line ends, digit
// groups, binary human sizes, console error texts on stdout with a non-zero
// exit status. File disks are sparse files under DataDir, so pool capacity,
// copies and resizes are real.
//
// The fake does not import the client's parser: the two are written from
// the same device captures (rdsclient/docs/device.md) and check each
// other. It shares only the validators of paths and pool names
// (internal/routeros), so both refuse the same names.
//
// Faults (FailNth, FailAlways, AnswerNth, StderrNth, Latency, Hang,
// DropAfterRun) are injected with Server.Inject and compose;
// DropConnections, RefuseConnections and RejectAuth simulate outages;
// Commands is the log of every command line received. WaitCommands and
// WaitIdle let a test wait for a command to arrive, or for every session
// to end, instead of sleeping. Close waits for every goroutine, hung
// commands included.
//
// With WithDataDir the disk table is saved in the directory after every
// change and loaded by the next Server started on it, so disks survive a
// restart as they do on a device (a restart of the process: nothing is
// fsynced, so a power cut of the machine is not survived).
//
// Hosts connected over NVMe/TCP are live state: ConnectInitiator and
// DisconnectInitiator count them per exported NQN
// (rdscsi/rdscsitest.LoopConnector does so for the loop devices it
// attaches), Initiators reads the count. Removing a disk a host still has
// connected fails with "failure: disk is in use", the text reported for
// RDS (rdsclient/docs/device.md, "Error texts and their classes"; not
// yet seen). Connections are never saved: Close forgets them and a
// restarted Server has none.
//
// The package imports nothing of the CSI side (gRPC, the CSI spec,
// mount-utils, OTel), so a test that only needs the fake RDS stays light.
//
// Error texts printed as the device does: "failure: no such item",
// "failure: not enough space", "failure: item with this name already
// exists", "bad command name", "expected end of command", "syntax error",
// "invalid value for argument", "input does not match any value of"
// (documented); "failure: disk is in use" (reported, unverified). Every
// other text below is the fake's choice.
//
// Device behaviour the fake had to choose where no capture exists (the
// list is kept in rdsclient/docs/device.md, "What rdstest invents"):
//
//   - failure texts: "failure: file already exists" (file-path taken),
//     "failure: nqn already in use" (NQN of an exported disk reused),
//     "failure: invalid file path" (not a valid path, per
//     routeros.PoolOf, strictly below a pool mount point),
//     "failure: cannot shrink file" (set file-size below the current size),
//     "failure: file is in use" (/file remove of a disk's backing file),
//     "failure: directory is not empty", "failure: cannot remove mount
//     point", "failure: not a file disk" (set/remove of a pool, nvme or
//     partition disk), "failure: type not specified", "failure: file-path
//     not specified", "failure: file-size not specified";
//   - "failure: no such item" for a missing slot given by name (remove,
//     set, monitor-traffic) and for copy-from with an empty [find];
//     removing an empty [find] result is a silent no-op;
//   - a set or remove naming several disks (a [find] matching several,
//     or "a,b") checks every target first and changes none when one is
//     refused, e.g. one of them is in use;
//   - connections to a disk survive /disk set nvme-tcp-export=no and a
//     change of its NQN (unverified): the disk stays in use until the
//     hosts disconnect, by the NQN they connected to; connecting needs a
//     disk currently exported with the NQN;
//   - "input does not match any value of type" for a type other than file,
//     "invalid value for argument <name>" for other bad values; "$"
//     anywhere (a variable) is a syntax error and is never expanded; ";" is
//     "expected end of command" (one command per session);
//   - human sizes use the largest binary unit the value strictly exceeds,
//     so 1 GiB prints as 1024.0MiB and 50 GiB as 50.0GiB;
//   - print detail lays properties out in line groups taken from the
//     captures; a group starts a new line unless the current line was
//     opened by wrapping; a line breaks at its last space that fits,
//     which may be inside a value (size=53 | 687 091 200), and a run with
//     no such space is cut at the width (rdsclient/docs/device.md,
//     "Wrapping"); a blank line follows every entry;
//   - a disk that is not exported prints nvme-tcp-export=no and omits the
//     port, NQN and allowed host name; exporting without a port or NQN
//     uses 4420 and nqn.2000-02.com.mikrotik:<slot>;
//   - /file lists each pool as type=disk, directories as type=directory,
//     files as "<ext> file"; /disk remove never deletes the backing file;
//   - /disk monitor-traffic prints the keys of the capture in its order
//     plus the further keys rdsclient/docs/device.md names under
//     "Commands used" (read-merges,
//     write-merges, discard-ops|merges|bytes|time, flush-ops|time), whose
//     order is chosen: merges after a direction's ops-per-second, discard
//     and flush after the write group; times are always 0ms; without once
//     it prints one snapshot and keeps the session open, as the device
//     streams;
//   - plain print (without detail or terse) prints the detail format;
//     print as-value prints nothing (it yields data only in scripts).
package rdstest
