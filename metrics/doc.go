// Package metrics reports what rds-csi does.
//
// Other packages report through the small Recorder interface; Noop
// discards. OTel implements Recorder with OpenTelemetry instruments on a
// MeterProvider the caller supplies: this package never builds an SDK or
// picks an exporter, so the same instruments feed a Prometheus /metrics
// endpoint or an OTLP collector.
//
// Attachment gauges (active NVMe connections, node attachments, running
// and timed-out migrations) are not counted from events. They are read
// from an AttachmentSource, normally an *attach.Manager, in a collection
// callback, so the first scrape after a controller restart is already
// right and a gauge cannot drift or go negative. Attachment events
// (conflicts, finished migrations, reconciles) are counted from the same
// source's observer. Construction takes the natural order: the recorder,
// then the Manager, then one call that registers the gauge callback and
// the event observer, both undone by Close:
//
//	rec, err := metrics.NewOTel(meterProvider)
//	manager, err := attach.NewManager(ctx, store)
//	err = rec.ObserveAttachments(manager)
//
// A Recorder of your own receives the events through AttachObserver.
//
// Through the OpenTelemetry Prometheus exporter with its default
// translation, and equally when pushed over OTLP to an OpenTelemetry
// Collector or Prometheus that translate with the same default
// (otlptranslator's UnderscoreEscapingWithSuffixes), the metrics are named:
//
//	rds_csi_nvme_connections_active             gauge
//	rds_csi_attachment_node_attachments_active  gauge
//	rds_csi_migration_active_migrations         gauge
//	rds_csi_migration_timed_out_migrations      gauge
//	rds_csi_volume_operations_total             counter    operation, status
//	rds_csi_volume_operation_duration_seconds   histogram  operation
//	rds_csi_rds_command_duration_seconds        histogram  command, status
//	rds_csi_rds_connection_state                gauge      address
//	rds_csi_rds_reconnect_total                 counter    status
//	rds_csi_nvme_connects_total                 counter    status
//	rds_csi_nvme_connect_duration_seconds       histogram
//	rds_csi_nvme_disconnects_total              counter    status
//	rds_csi_mount_operations_total              counter    operation, status
//	rds_csi_stale_mounts_detected_total         counter
//	rds_csi_attachment_conflicts_total          counter
//	rds_csi_attachment_reconcile_total          counter    action
//	rds_csi_migration_migrations_total          counter    result
//
// Label values come from small fixed sets (CSI method names, gRPC code
// names, documented statuses); anything else is reported as "other", so a
// buggy caller cannot create unbounded series. Volume IDs are never labels.
package metrics
