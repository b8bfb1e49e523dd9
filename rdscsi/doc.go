// Package rdscsi implements the CSI Identity, Controller and Node services
// for MikroTik ROSE Data Server (RDS) file-backed disks exported over
// NVMe/TCP.
//
// The servers register onto a grpc.Server the caller owns; logging (with
// CSI secrets stripped), metrics and per-volume serialization are
// interceptors the caller chains:
//
//	serialize, _ := rdscsi.SerializeInterceptor()
//	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(
//		rdscsi.LoggingInterceptor(logger),
//		rdscsi.MetricsInterceptor(recorder),
//		serialize,
//	))
//	ctrl, err := rdscsi.NewControllerServer(client, manager,
//		rdscsi.WithVolumePath("/storage-pool/k8s"), rdscsi.WithNVMeAddress("10.0.0.5"))
//	ctrl.Register(srv)
//	rdscsi.NewIdentityServer(rdscsi.DefaultDriverName, version, rdscsi.WithController(ctrl)).Register(srv)
//	l, err := rdscsi.Listen("unix:///csi/csi.sock")
//	srv.Serve(l)
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
// # Attachments
//
// ControllerPublishVolume records attachments through an Attachments
// implementation (attach.Manager): single-node access modes attach
// exclusively; MULTI_NODE_MULTI_WRITER is accepted for raw block volumes
// only and allows a second node for the duration of a live migration,
// bounded by the StorageClass migrationTimeoutSeconds.
//
// # Errors
//
// Handlers return Go errors wrapping the sentinels of this package,
// rdsclient and attach; Status is the single place that turns them into
// gRPC codes.
package rdscsi
