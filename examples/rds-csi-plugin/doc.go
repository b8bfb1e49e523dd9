// Command rds-csi-plugin is a complete CSI plugin for MikroTik ROSE Data
// Server built from the rds-csi packages: it reads flags (each but
// --version with an RDS_CSI_* environment fallback), connects to the RDS
// over SSH, wires the controller, node and identity services onto one
// gRPC server with the logging, metrics and serialization interceptors,
// exports metrics to Prometheus and/or OTLP, and shuts down gracefully on
// SIGTERM or SIGINT.
//
// The controller's attachment truth is the Kubernetes API in a pod (or
// with --kubeconfig): attach/kube's Cluster rebuilds it from the
// VolumeAttachments before the plugin serves, keeps it in step, looks
// nodes up in the Node cache and, with --leader-election, lets one
// replica report the attachment metrics. Outside a cluster it is a state
// file (--state-file) and a list of nodes (--known-nodes).
//
// With --simulate it runs against an in-process fake RDS on loopback and
// attaches volumes as loop devices, so the whole lifecycle can be tried on
// one machine (node staging needs root and loop devices).
//
// See examples/README.md for the flags, the metrics and a walkthrough.
package main
