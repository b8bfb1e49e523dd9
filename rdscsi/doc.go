// Package rdscsi implements the CSI Identity, Controller and Node services
// for MikroTik ROSE Data Server (RDS) file-backed disks exported over
// NVMe/TCP.
//
// The servers register onto a grpc.Server the caller owns; logging (with
// CSI secrets stripped), metrics and per-volume serialization are
// interceptors the caller chains:
//
//	serialize := rdscsi.SerializeInterceptor()
//	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(
//		rdscsi.LoggingInterceptor(logger),
//		rdscsi.MetricsInterceptor(recorder),
//		serialize,
//	))
//	ctrl, err := rdscsi.NewControllerServer(client, manager,
//		rdscsi.WithLogger(logger), rdscsi.WithRecorder(recorder),
//		rdscsi.WithVolumePath("/storage-pool/k8s"), rdscsi.WithNVMeAddress("10.0.0.5"))
//	ctrl.Register(srv)
//	ids, err := rdscsi.NewIdentityServer(rdscsi.DefaultDriverName, version, rdscsi.WithController(ctrl))
//	ids.Register(srv)
//	l, err := rdscsi.Listen("unix:///csi/csi.sock")
//	srv.Serve(l)
//
// # Options
//
// Constructors take required values as arguments and tunables as options,
// and check everything before they return: a bad driver name, path,
// address, topology or limit is an error wrapping ErrInvalidArgument at
// construction, never at the first RPC. What the servers have in common
// is set by a ServerOption, one value that NewControllerServer and
// NewNodeServer both accept: WithLogger, WithRecorder, WithTopology (the
// accessible topology of volumes; what NodeGetInfo reports) and
// WithMaxVolumesPerNode (enforced by the controller, reported by the
// node); WithTopology also tells an IdentityServer to declare
// VOLUME_ACCESSIBILITY_CONSTRAINTS. The other options belong to one
// server: ControllerOption, NodeOption or IdentityOption. Maps given to
// options are copied.
//
// # Volumes
//
// A volume is an RDS disk whose slot is its volume ID, "pvc-<uuid>": a CO
// name of that form is used as is, any other name maps to a name-based
// UUID, so retries and replicas agree. The NQN is
// "nqn.2000-02.com.mikrotik:<volume ID>" and the backing file
// <volumePath>/<volume ID>.img, or <volumePath>/<volume ID>.from-<source
// ID>.img for a clone or a restored snapshot. IDs of any other shape are
// treated as nonexistent volumes and never reach the RDS console.
//
// StorageClass parameters: volumePath (directory below a pool, e.g.
// /storage-pool/k8s), nvmeAddress, nvmePort (default 4420), ctrlLossTmo,
// reconnectDelay, keepAliveTmo and migrationTimeoutSeconds. Keys with the
// csi.storage.k8s.io/ prefix are ignored; any other key is an error. The
// node receives everything in the volume context and publish context.
//
// # Snapshots
//
// A snapshot is an unexported copy-on-write copy, slot "snap-<uuid>",
// whose backing file name records its source volume and creation time
// (<dir>/snap-<uuid>.from-pvc-<uuid>.at-<unix seconds>.img), because
// RouterOS keeps neither. Restoring and cloning are copies with export.
// Copies are independent of their source, so volumes with snapshots can be
// deleted.
//
// # Access modes
//
// One table decides, for every access mode and for raw block and mounted
// (ext4, xfs) volumes, whether the driver serves it, how it attaches and
// whether the node mounts it read-only; the controller and the node both
// read it, so they admit the same capabilities and refuse the others
// alike with InvalidArgument:
//
//	SINGLE_NODE_WRITER, SINGLE_NODE_SINGLE_WRITER,
//	SINGLE_NODE_MULTI_WRITER          block, mount   one node
//	SINGLE_NODE_READER_ONLY           block, mount   one node, read-only
//	MULTI_NODE_MULTI_WRITER           block          a second node during a live migration
//	MULTI_NODE_READER_ONLY,
//	MULTI_NODE_SINGLE_WRITER          refused
//
// # Attachments
//
// ControllerPublishVolume records attachments through an Attachments
// implementation (attach.Manager): single-node access modes attach
// exclusively; a MULTI_NODE_MULTI_WRITER block volume may have a second
// node for the duration of a live migration, bounded by the StorageClass
// migrationTimeoutSeconds. A node that does
// not exist (WithNodeLookup) is NotFound; a node at its volume limit
// (WithMaxVolumesPerNode) is ResourceExhausted. PUBLISH_READONLY is not
// offered, so a readonly ControllerPublishVolume is refused. Without
// Attachments the server offers no publish RPCs and the node connects
// from the volume context alone.
//
// # Servers and capabilities
//
// IdentityServer answers GetPluginInfo, GetPluginCapabilities and Probe
// (WithController probes the RDS; a failed probe is Unavailable, except a
// misconfiguration, a host key that is not the pinned one or a refused
// login, which is FailedPrecondition with what the operator must change).
// ControllerServer and NodeServer advertise only the capabilities their
// configuration can serve: publish RPCs only with Attachments, topology
// only when it is configured.
//
// NodeServer connects volumes through an nvme.Connector (package
// rdscsi/nvme): nvme.NewTCPConnector drives nvme-cli and resolves the
// device by NQN through sysfs on every call; rdscsitest.LoopConnector
// attaches the backing files of an rdstest fake to loop devices for tests
// and simulation. The connector's error classes map to gRPC codes here
// like every other. NodeStageVolume formats a device only when the
// probe definitively reports it blank (a flaky probe is retried, then
// fails closed) and writes a stage record (NQN, device identity, file
// system UUID) so that another device is refused on a later stage or
// publish; raw block volumes are bind-mounted from the device node.
// NodeUnstageVolume succeeds only once the volume is unmounted and its
// device is gone. Mount, unmount, mkfs and resize are bounded by the
// RPC's ctx (an unmount that hangs falls back to a forced one when the
// mounter offers it): when ctx ends first the call returns its error,
// and the volume stays busy (Aborted to other calls) until the kernel
// operation it abandoned has ended, so nothing races it. NodeGetVolumeStats, NodeExpandVolume and NodeGetInfo
// (topology, max_volumes_per_node from WithMaxVolumesPerNode) complete the
// service.
//
// # Health
//
// CSI 1.13 reports volume health through dedicated RPCs:
// ControllerGetVolumeHealth and ControllerListVolumeHealth compare each
// disk with the device (not exported, backing file missing, size
// mismatch), and NodeGetVolumeHealth checks the staged device and mounts
// on the node.
//
// # Interceptors
//
// LoggingInterceptor logs requests and failures through log/slog after
// every csi_secret field has been replaced by StrippedSecret;
// MetricsInterceptor reports each RPC to a metrics.Recorder; and
// SerializeInterceptor lets one RPC at a time work on a volume or snapshot
// (CreateVolume on the ID its name maps to): a concurrent call on the same
// ID gets Aborted at once. NodeServer also serializes its own volume RPCs,
// so it is safe even without the interceptor.
//
// # Errors
//
// Handlers return Go errors wrapping the sentinels of this package,
// rdsclient and attach; Status (through Code) is the single place that
// turns them into gRPC codes:
//
//	invalid argument (rdscsi, rdsclient, attach)     InvalidArgument
//	not found (volume, snapshot, node, disk)         NotFound
//	exists with other parameters                     AlreadyExists
//	pool full, node at its limit                     ResourceExhausted
//	RDS unreachable, closed client, device not ready Unavailable
//	context deadline                                 DeadlineExceeded
//	attach conflict, migration limit or timeout,
//	disk in use, wrong device, not connected,
//	RDS host key not the pinned one, login refused   FailedPrecondition
//	concurrent operation, bad pagination token       Aborted
//	unexpected RDS output, anything unknown          Internal
package rdscsi
