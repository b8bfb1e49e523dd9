// Command csi-lifecycle drives one volume through its whole CSI lifecycle
// against a running plugin's socket, the way a container orchestrator
// would: CreateVolume, ControllerPublishVolume, NodeStageVolume,
// NodePublishVolume, a write and read back, NodeGetVolumeStats, then
// everything undone in reverse order. After each step it prints the
// plugin's rds_csi_* gauges when given the plugin's /metrics URL.
//
//	go run ./examples/csi-lifecycle --endpoint unix:///tmp/csi.sock \
//	    --metrics-url http://127.0.0.1:9090/metrics [--block] [--node-id n1]
//
// The node steps run on this machine, so start it where the plugin's node
// service runs, as root.
package main
