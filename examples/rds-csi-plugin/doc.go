// Command rds-csi-plugin is a complete CSI plugin for MikroTik ROSE Data
// Server built from the rds-csi packages: it reads flags (each but
// --version with an RDS_CSI_* environment fallback), connects to the RDS
// over SSH, wires the controller, node and identity services onto one
// gRPC server with the logging, metrics and serialization interceptors,
// exports metrics to Prometheus and/or OTLP, and shuts down gracefully on
// SIGTERM or SIGINT.
//
// With --simulate it runs against an in-process fake RDS on loopback and
// attaches volumes as loop devices, so the whole lifecycle can be tried on
// one machine (node staging needs root and loop devices).
//
// See examples/README.md for the flags, the metrics and a walkthrough.
package main
