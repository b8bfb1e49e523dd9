// Package rdscsitest provides test helpers for the CSI side of rds-csi, as
// rdstest does for the RDS side.
//
// LoopConnector is an nvme.Connector that attaches the disks of an
// rdstest.Server as loop devices instead of NVMe/TCP, so an
// rdscsi.NodeServer stages, mounts, grows and unstages real block devices
// in tests and simulations (root and /dev/loop-control needed). Together
// with rdstest it runs the whole driver on one machine without an RDS.
//
// The fake RDS stays cheap to import on its own: rdstest knows nothing of
// CSI, and this package is where the two meet.
package rdscsitest
