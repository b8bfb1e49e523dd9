// Package otelcollector holds an OpenTelemetry Collector configuration,
// config.yaml, that receives the metrics of rds-csi-plugin over OTLP and
// by scraping its Prometheus endpoint. The package has no code of its own:
// its tests check that the YAML is valid and that every pipeline uses
// components the file defines. See README.md.
package otelcollector
