package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/srvlab/rds-csi/attach"
)

// MeterName is the instrumentation scope of every instrument OTel creates.
// It is also this module's path, whose version in the running binary
// becomes the scope's version (otel_scope_version in Prometheus).
const MeterName = "github.com/srvlab/rds-csi"

// moduleVersion is read once: build info does not change at run time.
var moduleVersion = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	return versionOf(bi, MeterName)
})

// versionOf returns the version of module path in bi: a release or
// pseudo-version when the module is a dependency, whatever the go command
// stamped ("(devel)" or a VCS pseudo-version) when it is the main module,
// and "" when it is absent.
func versionOf(bi *debug.BuildInfo, path string) string {
	if bi.Main.Path == path {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path != path {
			continue
		}
		if d.Replace != nil && d.Replace.Version != "" {
			return d.Replace.Version
		}
		return d.Version
	}
	return ""
}

// defaultBuckets are the histogram bucket boundaries, in seconds, of every
// duration instrument: from a fast local command to a slow disk copy.
var defaultBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Sentinel errors.
var (
	// ErrInvalid: a nil MeterProvider or AttachmentSource, bad bucket
	// boundaries, or a second ObserveAttachments.
	ErrInvalid = errors.New("metrics: invalid argument")
	// ErrClosed: ObserveAttachments after Close.
	ErrClosed = errors.New("metrics: recorder closed")
)

// AttachmentSource is what OTel.ObserveAttachments reads attachments
// from; *attach.Manager satisfies it. Counts is called from collection
// callbacks, so it must be O(1) and must not block. AddObserver adds a
// function that receives every attachment event and returns a function
// that removes it again.
type AttachmentSource interface {
	Counts() attach.Counts
	AddObserver(f func(attach.Event)) (remove func())
}

// Option tunes an OTel recorder.
type Option func(*config)

type config struct {
	logger  *slog.Logger
	buckets []float64
}

// WithLogger sets the logger that reports label values replaced by
// "other" (once per label). The default discards.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithDurationBuckets replaces the histogram bucket boundaries (default
// 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60). They
// are in seconds and must be finite and strictly increasing.
func WithDurationBuckets(bounds ...float64) Option {
	return func(c *config) { c.buckets = append([]float64(nil), bounds...) }
}

// OTel is a Recorder that reports through OpenTelemetry instruments. It
// never builds a MeterProvider or picks an exporter: the caller wires
// those. Attachment gauges are computed at collection time from the
// AttachmentSource given to ObserveAttachments, so they are right from the
// first collection after a restart. It is safe for concurrent use and
// starts no goroutines.
type OTel struct {
	meter metric.Meter

	closed  atomic.Bool
	mu      sync.Mutex          // guards the fields below
	reg     metric.Registration // gauge callback; nil until ObserveAttachments, and once closed
	remove  func()              // removes the event observer; nil likewise
	watched bool                // ObserveAttachments succeeded once

	// Observable gauges.
	volumes         metric.Int64ObservableGauge
	nodeAttachments metric.Int64ObservableGauge
	migrations      metric.Int64ObservableGauge
	timedOut        metric.Int64ObservableGauge

	// Synchronous instruments.
	rpcTotal         metric.Int64Counter
	rpcDuration      metric.Float64Histogram
	rdsDuration      metric.Float64Histogram
	rdsState         metric.Int64Gauge
	rdsReconnect     metric.Int64Counter
	nvmeConnects     metric.Int64Counter
	nvmeDuration     metric.Float64Histogram
	nvmeDisconnects  metric.Int64Counter
	mountTotal       metric.Int64Counter
	staleMounts      metric.Int64Counter
	conflicts        metric.Int64Counter
	reconcileTotal   metric.Int64Counter
	migrationResults metric.Int64Counter

	// Label sanitisers.
	method, code, command, rdsStatus, address,
	nvmeStatus, reconnectStatus, mountOp, mountStatus,
	reconcileAction, migrationResult *label
}

var _ Recorder = (*OTel)(nil)

// NewOTel creates the instruments on a meter named MeterName, versioned
// with this module's version from the binary's build info, from mp. The
// attachment gauges report nothing until ObserveAttachments. Call Close
// when done.
func NewOTel(mp metric.MeterProvider, opts ...Option) (*OTel, error) {
	if mp == nil {
		return nil, fmt.Errorf("metrics: nil MeterProvider: %w", ErrInvalid)
	}
	cfg := config{buckets: defaultBuckets}
	for _, opt := range opts {
		opt(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if err := checkBuckets(cfg.buckets); err != nil {
		return nil, err
	}
	lg := cfg.logger
	o := &OTel{
		method:          fixedLabel(lg, "operation", csiMethods),
		code:            fixedLabel(lg, "status", grpcCodes),
		command:         openLabel(lg, "command", maxCommands, validCommand),
		rdsStatus:       fixedLabel(lg, "status", rdsStatuses),
		address:         openLabel(lg, "address", maxAddresses, validAddress),
		nvmeStatus:      fixedLabel(lg, "status", okError),
		reconnectStatus: fixedLabel(lg, "status", okError),
		mountOp:         fixedLabel(lg, "operation", mountOperations),
		mountStatus:     fixedLabel(lg, "status", okError),
		reconcileAction: fixedLabel(lg, "action", reconcileActions),
		migrationResult: fixedLabel(lg, "result", migrationResults),
	}
	o.meter = mp.Meter(MeterName, metric.WithInstrumentationVersion(moduleVersion()))
	b := builder{m: o.meter, buckets: metric.WithExplicitBucketBoundaries(cfg.buckets...)}

	// Instrument names are chosen so that the Prometheus exporter's default
	// translation (dots to underscores, "_seconds" for unit "s", "_total"
	// for counters) yields the documented names; units in braces add no
	// suffix, and unit "1" is avoided because gauges would gain "_ratio".
	o.rpcTotal = b.counter("rds_csi.volume.operations", "{operation}",
		"CSI RPCs handled, by method and gRPC status code.")
	o.rpcDuration = b.histogram("rds_csi.volume.operation.duration",
		"Duration of CSI RPCs in seconds, by method.")
	o.rdsDuration = b.histogram("rds_csi.rds.command.duration",
		"Duration of RouterOS commands sent to the RDS in seconds, by command and status.")
	o.rdsState = b.gauge("rds_csi.rds.connection.state", "{connection}",
		"State of the SSH connection to the RDS: 1 connected, 0 not.")
	o.rdsReconnect = b.counter("rds_csi.rds.reconnect", "{reconnect}",
		"SSH re-dials to the RDS, by status.")
	o.nvmeConnects = b.counter("rds_csi.nvme.connects", "{connect}",
		"NVMe/TCP connects, by status.")
	o.nvmeDuration = b.histogram("rds_csi.nvme.connect.duration",
		"Duration of NVMe/TCP connects in seconds.")
	o.nvmeDisconnects = b.counter("rds_csi.nvme.disconnects", "{disconnect}",
		"NVMe/TCP disconnects, by status.")
	o.mountTotal = b.counter("rds_csi.mount.operations", "{operation}",
		"Filesystem operations (format, mount, unmount, resize), by status.")
	o.staleMounts = b.counter("rds_csi.stale_mounts.detected", "{mount}",
		"Stale mounts detected.")
	o.conflicts = b.counter("rds_csi.attachment.conflicts", "{conflict}",
		"Attachments refused because the volume was attached elsewhere.")
	o.reconcileTotal = b.counter("rds_csi.attachment.reconcile", "{attachment}",
		"Attachments handled by reconciliation, by action.")
	o.migrationResults = b.counter("rds_csi.migration.migrations", "{migration}",
		"Finished live migrations, by result (success or timeout).")

	o.volumes = b.observable("rds_csi.nvme.connections.active", "{volume}",
		"Volumes attached to at least one node; a migrating volume counts once.")
	o.nodeAttachments = b.observable("rds_csi.attachment.node_attachments.active", "{attachment}",
		"Volume-node attachments; a migrating volume counts twice.")
	o.migrations = b.observable("rds_csi.migration.active_migrations", "{migration}",
		"Volumes attached to two nodes by a running live migration.")
	o.timedOut = b.observable("rds_csi.migration.timed_out_migrations", "{migration}",
		"Running live migrations past their timeout.")
	if b.err != nil {
		return nil, b.err
	}
	return o, nil
}

// ObserveAttachments makes o report the attachments of src: the gauges
// (active connections, node attachments, running and timed-out
// migrations) read src.Counts at each collection, and an observer added
// to src counts its events as AttachObserver does (conflicts, finished
// migrations, nodes cleared by reconciliation). Build the recorder, then
// the Manager, then call this: NewManager fires no events, so nothing is
// missed. Close undoes both. A second call fails with ErrInvalid, a call
// after Close with ErrClosed.
func (o *OTel) ObserveAttachments(src AttachmentSource) error {
	if src == nil {
		return fmt.Errorf("metrics: nil AttachmentSource: %w", ErrInvalid)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.closed.Load():
		return ErrClosed
	case o.watched:
		return fmt.Errorf("metrics: attachments are already observed: %w", ErrInvalid)
	}
	reg, err := o.meter.RegisterCallback(func(ctx context.Context, ob metric.Observer) error {
		return o.observe(ctx, ob, src)
	}, o.volumes, o.nodeAttachments, o.migrations, o.timedOut)
	if err != nil {
		return fmt.Errorf("metrics: register callback: %w", err)
	}
	o.reg, o.remove, o.watched = reg, src.AddObserver(AttachObserver(o)), true
	return nil
}

func checkBuckets(b []float64) error {
	for i, v := range b {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("metrics: bucket boundary %v is not finite: %w", v, ErrInvalid)
		}
		if i > 0 && v <= b[i-1] {
			return fmt.Errorf("metrics: bucket boundaries not strictly increasing at %v: %w", v, ErrInvalid)
		}
	}
	return nil
}

// builder creates instruments and keeps the first error.
type builder struct {
	m       metric.Meter
	buckets metric.HistogramOption
	err     error
}

func (b *builder) keep(name string, err error) {
	if err != nil && b.err == nil {
		b.err = fmt.Errorf("metrics: create instrument %s: %w", name, err)
	}
}

func (b *builder) counter(name, unit, help string) metric.Int64Counter {
	c, err := b.m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(help))
	b.keep(name, err)
	return c
}

func (b *builder) gauge(name, unit, help string) metric.Int64Gauge {
	g, err := b.m.Int64Gauge(name, metric.WithUnit(unit), metric.WithDescription(help))
	b.keep(name, err)
	return g
}

func (b *builder) histogram(name, help string) metric.Float64Histogram {
	h, err := b.m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(help), b.buckets)
	b.keep(name, err)
	return h
}

func (b *builder) observable(name, unit, help string) metric.Int64ObservableGauge {
	g, err := b.m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(help))
	b.keep(name, err)
	return g
}

// observe is the collection callback: one O(1) Counts call, no locks held
// here beyond what src takes.
func (o *OTel) observe(ctx context.Context, ob metric.Observer, src AttachmentSource) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if o.closed.Load() {
		return nil
	}
	c := src.Counts()
	ob.ObserveInt64(o.volumes, nonNegative(c.Volumes))
	ob.ObserveInt64(o.nodeAttachments, nonNegative(c.NodeAttachments))
	ob.ObserveInt64(o.migrations, nonNegative(c.Migrations))
	ob.ObserveInt64(o.timedOut, nonNegative(c.TimedOutMigrations))
	return nil
}

// nonNegative guards the gauges against a buggy AttachmentSource: a negative
// attachment count is never a truth worth exporting.
func nonNegative(n int) int64 {
	if n < 0 {
		return 0
	}
	return int64(n)
}

// Close undoes ObserveAttachments: it unregisters the gauge callback and
// removes the event observer. Once it returns, the callback never runs
// again, the attachment gauges vanish from later collections and the
// recording methods do nothing. Close is idempotent.
func (o *OTel) Close() error {
	o.closed.Store(true)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.remove != nil {
		o.remove()
		o.remove = nil
	}
	if o.reg == nil {
		return nil
	}
	err := o.reg.Unregister()
	o.reg = nil
	if err != nil {
		return fmt.Errorf("metrics: unregister callback: %w", err)
	}
	return nil
}

func seconds(d time.Duration) float64 {
	if d < 0 {
		return 0
	}
	return d.Seconds()
}

func attrs(kv ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(kv...))
}

// RPC implements Recorder.
func (o *OTel) RPC(ctx context.Context, method, code string, d time.Duration) {
	if o.closed.Load() {
		return
	}
	op := attribute.String("operation", o.method.value(shortMethod(method)))
	o.rpcTotal.Add(ctx, 1, attrs(op, attribute.String("status", o.code.value(code))))
	o.rpcDuration.Record(ctx, seconds(d), attrs(op))
}

// RDSCommand implements Recorder. command is a menu path and verb; values
// that look like arguments, and distinct commands beyond a small bound,
// are reported as "other".
func (o *OTel) RDSCommand(ctx context.Context, command, status string, d time.Duration) {
	if o.closed.Load() {
		return
	}
	o.rdsDuration.Record(ctx, seconds(d), attrs(
		attribute.String("command", o.command.value(command)),
		attribute.String("status", o.rdsStatus.value(status))))
}

// RDSConnectionState implements Recorder. Addresses beyond a small bound
// share the "other" series.
func (o *OTel) RDSConnectionState(ctx context.Context, address string, connected bool) {
	if o.closed.Load() {
		return
	}
	var v int64
	if connected {
		v = 1
	}
	o.rdsState.Record(ctx, v, attrs(attribute.String("address", o.address.value(address))))
}

// RDSReconnect implements Recorder.
func (o *OTel) RDSReconnect(ctx context.Context, status string) {
	if o.closed.Load() {
		return
	}
	o.rdsReconnect.Add(ctx, 1, attrs(attribute.String("status", o.reconnectStatus.value(status))))
}

// NVMeConnect implements Recorder.
func (o *OTel) NVMeConnect(ctx context.Context, status string, d time.Duration) {
	if o.closed.Load() {
		return
	}
	o.nvmeConnects.Add(ctx, 1, attrs(attribute.String("status", o.nvmeStatus.value(status))))
	o.nvmeDuration.Record(ctx, seconds(d))
}

// NVMeDisconnect implements Recorder. It counts into
// rds_csi_nvme_disconnects_total; the duration is not recorded.
func (o *OTel) NVMeDisconnect(ctx context.Context, status string, _ time.Duration) {
	if o.closed.Load() {
		return
	}
	o.nvmeDisconnects.Add(ctx, 1, attrs(attribute.String("status", o.nvmeStatus.value(status))))
}

// MountOperation implements Recorder. The duration is not recorded.
func (o *OTel) MountOperation(ctx context.Context, operation, status string, _ time.Duration) {
	if o.closed.Load() {
		return
	}
	o.mountTotal.Add(ctx, 1, attrs(
		attribute.String("operation", o.mountOp.value(operation)),
		attribute.String("status", o.mountStatus.value(status))))
}

// StaleMount implements Recorder.
func (o *OTel) StaleMount(ctx context.Context) {
	if o.closed.Load() {
		return
	}
	o.staleMounts.Add(ctx, 1)
}

// AttachmentConflict implements Recorder.
func (o *OTel) AttachmentConflict(ctx context.Context) {
	if o.closed.Load() {
		return
	}
	o.conflicts.Add(ctx, 1)
}

// Migration implements Recorder. "started" is not counted (the active
// migrations gauge shows running ones); "success" and "timeout" are.
func (o *OTel) Migration(ctx context.Context, result string) {
	if o.closed.Load() || result == "started" {
		return
	}
	o.migrationResults.Add(ctx, 1, attrs(attribute.String("result", o.migrationResult.value(result))))
}

// Reconcile implements Recorder. n <= 0 records nothing.
func (o *OTel) Reconcile(ctx context.Context, action string, n int) {
	if o.closed.Load() || n <= 0 {
		return
	}
	o.reconcileTotal.Add(ctx, int64(n), attrs(attribute.String("action", o.reconcileAction.value(action))))
}
