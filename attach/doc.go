// Package attach tracks which volumes are attached to which nodes, enforces
// the attachment rules of a CSI controller, and keeps that state durable.
//
// A Manager holds the state in memory and writes every change to a Store
// before the change becomes visible or the call returns:
//
//   - Exclusive volumes (RWO, single-node read-only) have one node.
//     Attaching the same node again succeeds; another node gets
//     ErrConflict.
//   - Migratable volumes (RWX raw block, for KubeVirt live migration) may
//     have two nodes. The second node starts a migration with a timeout; a
//     third gets ErrMigrationLimit, or ErrMigrationTimedOut once the
//     migration has passed its timeout. The Manager never detaches anyone
//     itself: detaching either node ends the migration. Start time and
//     timeout are stored, so the timeout survives restarts.
//   - Attaching with another mode than the volume's is ErrConflict;
//     detaching what is not attached succeeds.
//
// Counts is O(1) and meant for metrics callbacks: gauges are read from the
// state, never built by counting events, so they are right after a
// restart. Events (WithObserver, Manager.AddObserver) report what
// happened, for counters and logs.
//
// FileStore is the durable Store: an append-only, checksummed log with
// group commit, compaction and torn-tail recovery, guarded against a second
// opener by a lock file. MemStore is for tests. Package attachtest checks
// any Store against the contract.
//
// Package attach knows volumes, nodes and durability; nothing about CSI,
// gRPC or metrics.
package attach
