// Package nvme is the NVMe connector of rds-csi: the vocabulary a CSI node
// uses to attach volumes (Target, Connector, Rescanner, the error classes)
// and TCPConnector, which attaches NVMe/TCP subsystems to this host with
// nvme-cli and finds their block devices through sysfs.
//
// rdscsi.NewNodeServer takes any Connector: NewTCPConnector on real nodes,
// rdscsitest.LoopConnector in tests and simulations, or an embedder's own.
// The package knows nothing of CSI or gRPC; rdscsi maps its error classes
// to gRPC codes.
//
// The kernel is the only source of truth: a namespace device is looked up
// by subsystem NQN in sysfs on every call and never remembered, because
// controller numbers (nvme3n1) change across reconnects. Connect is
// idempotent (an attached subsystem is not connected twice), and every
// operation refuses an NQN without the configured prefix, so a host's own
// NVMe-oF boot volume is never touched.
//
// Commands run through an injectable Runner and sysfs is read below a
// configurable root, so the package is tested against a fake sysfs tree.
package nvme
