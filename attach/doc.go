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
// A crash mid-append leaves a torn tail, which FileStore cuts off on open:
// those records were never acknowledged. Damage followed by valid records
// (bit rot, a bad sector, a stray write) is different, since cutting there
// would drop acknowledged attachments and could let a volume be published
// to a second node: NewFileStore fails with ErrCorrupt and leaves the file
// as it is. Either open it once with WithTruncateAtCorruption, which keeps
// the records before the damage and drops those after it, or move the file
// aside and rebuild the state from the orchestrator's records with
// Manager.Replace before serving (in Kubernetes the external-attacher also
// publishes again the VolumeAttachments missing from ListVolumes' published
// nodes).
//
// Package attach knows volumes, nodes and durability; nothing about CSI,
// gRPC or metrics.
package attach
