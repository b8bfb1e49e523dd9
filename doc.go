// Package rds is the root of rds-csi, a library-first Go module for building
// Kubernetes CSI drivers on MikroTik ROSE Data Server (RDS).
//
// RDS exports file-backed disks over NVMe/TCP and is managed over SSH with
// the RouterOS CLI. The module is a set of small packages, each usable and
// testable on its own:
//
//   - rdsclient: an SSH RouterOS client for disks, files, copies, capacity
//     and traffic statistics, with a context on every call and pinned host
//     keys.
//   - rdsclient/rdstest: an in-process fake RDS (a real SSH server, real
//     sparse files, fault injection) for tests and simulation, as
//     net/http/httptest is for HTTP.
//   - attach: the attachment manager: exclusive and migratable (KubeVirt
//     live migration) attachments in a durable, pluggable store, with O(1)
//     counts.
//   - rdscsi: CSI Identity, Controller and Node servers that register on the
//     caller's gRPC server, plus interceptors for logging without secrets,
//     metrics and per-volume serialization.
//   - rdscsi/nvme: the node's NVMe connector (Target, Connector, Rescanner,
//     error classes) and its NVMe/TCP implementation over nvme-cli and
//     sysfs, free of CSI and gRPC imports.
//   - rdscsi/rdscsitest: test helpers for the CSI side, such as a connector
//     that attaches rdstest's disks as loop devices.
//   - metrics: a small Recorder interface, a no-op, and an OpenTelemetry
//     implementation whose gauges are computed from the attachment manager.
//
// Start with examples/rds-csi-plugin, the complete plugin binary, which
// shows how the packages compose:
//
//	client, _ := rdsclient.Dial(ctx, addr, cfg)
//	manager, _ := attach.NewManager(ctx, store)
//	controller, _ := rdscsi.NewControllerServer(client, manager)
//	controller.Register(grpcServer)
//
// This package holds documentation only.
package rds
