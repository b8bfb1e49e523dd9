package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// serviceName is the default service.name resource attribute;
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES override it.
const serviceName = "rds-csi-plugin"

// OTLP protocols (OTEL_EXPORTER_OTLP_PROTOCOL values).
const (
	protoGRPC = "grpc"
	protoHTTP = "http/protobuf"
)

// telemetry owns the OpenTelemetry SDK of the process: the MeterProvider
// and its readers, and the Prometheus HTTP endpoint.
type telemetry struct {
	mp          *sdkmetric.MeterProvider
	srv         *http.Server
	metricsAddr string // bound address of /metrics, "" when disabled
	otlp        string // OTLP protocol in use, "" when disabled
	ln          net.Listener
	served      bool
	serveErr    chan error
}

// exporterChoice is what the environment asks of OTLP.
type exporterChoice struct {
	otlp     bool
	protocol string
}

// chooseExporters reads the standard OpenTelemetry variables that decide
// whether metrics go out over OTLP and with which protocol. The OTLP
// exporters themselves read the endpoint, headers, TLS, timeout and
// temporality variables; the periodic reader reads
// OTEL_METRIC_EXPORT_INTERVAL and OTEL_METRIC_EXPORT_TIMEOUT.
//
// OTEL_METRICS_EXPORTER is a comma-separated list of otlp, prometheus and
// none. Unset, OTLP is on when an OTLP endpoint variable is set. The
// Prometheus endpoint follows --metrics-address alone (the explicit flag
// wins), but listing only prometheus without that flag is an error.
func chooseExporters(getenv func(string) string, metricsAddress string) (exporterChoice, error) {
	var ch exporterChoice
	if v := strings.TrimSpace(getenv("OTEL_METRICS_EXPORTER")); v != "" {
		for e := range strings.SplitSeq(v, ",") {
			switch e = strings.TrimSpace(e); e {
			case "otlp":
				ch.otlp = true
			case "prometheus":
				if metricsAddress == "" {
					return ch, errors.New("OTEL_METRICS_EXPORTER lists prometheus but --metrics-address is empty")
				}
			case "none", "":
			default:
				return ch, fmt.Errorf("OTEL_METRICS_EXPORTER: unsupported exporter %q (want otlp, prometheus or none)", e)
			}
		}
	} else {
		ch.otlp = getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != ""
	}
	if !ch.otlp {
		return ch, nil
	}
	if err := checkOTLPEnv(getenv); err != nil {
		return ch, err
	}
	ch.protocol = protoHTTP // the OpenTelemetry specification's default
	for _, name := range []string{"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			if !slices.Contains([]string{protoGRPC, protoHTTP}, v) {
				return ch, fmt.Errorf("%s: unsupported protocol %q (want grpc or http/protobuf)", name, v)
			}
			ch.protocol = v
			break
		}
	}
	return ch, nil
}

// checkOTLPEnv rejects OTLP settings the SDK would only log about before
// silently exporting elsewhere or at its default pace: an endpoint without
// an http(s) scheme ("collector:4317" sends to localhost) and an export
// interval or timeout that is not a positive number of milliseconds.
func checkOTLPEnv(getenv func(string) string) error {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"} {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s: want a URL such as http://collector:4317 (grpc) or http://collector:4318 (http/protobuf), got %q", name, v)
		}
	}
	for _, name := range []string{"OTEL_METRIC_EXPORT_INTERVAL", "OTEL_METRIC_EXPORT_TIMEOUT"} {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			continue
		}
		if ms, err := strconv.Atoi(v); err != nil || ms <= 0 {
			return fmt.Errorf("%s: want a positive number of milliseconds, got %q", name, v)
		}
	}
	return nil
}

// startTelemetry builds the MeterProvider with a Prometheus reader when
// --metrics-address is set and an OTLP periodic reader when the
// environment asks for one, and starts serving /metrics.
func startTelemetry(ctx context.Context, c *config, getenv func(string) string, version string, logger *slog.Logger) (*telemetry, error) {
	ch, err := chooseExporters(getenv, c.metricsAddress)
	if err != nil {
		return nil, err
	}
	otelLogger := logger.With("component", "opentelemetry")
	otel.SetLogger(logr.FromSlogHandler(otelLogger.Handler()))
	// Building the resource reports some malformed OTEL_RESOURCE_ATTRIBUTES
	// only through the global error handler: collect those and fail.
	var resErrs []error
	var resMu sync.Mutex
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		resMu.Lock()
		resErrs = append(resErrs, err)
		resMu.Unlock()
	}))
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", serviceName),
			attribute.String("service.version", version),
			// Keeps instances apart where resource attributes become
			// labels (a Collector's Prometheus exporter makes it the
			// instance label); the node ID is unique per node pod and,
			// by default the host name, per controller pod.
			attribute.String("service.instance.id", c.nodeID),
		),
		// Later detectors win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
		// override the attributes above.
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
	)
	resMu.Lock()
	err = errors.Join(append(resErrs, err)...)
	resMu.Unlock()
	otel.SetErrorHandler(otelErrorHandler(otelLogger))
	if err != nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %s", oneLine(err))
	}

	t := &telemetry{serveErr: make(chan error, 1)}
	opts := []sdkmetric.Option{sdkmetric.WithResource(res)}

	var ln net.Listener
	if c.metricsAddress != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		exp, err := otelprom.New(otelprom.WithRegisterer(reg))
		if err != nil {
			return nil, fmt.Errorf("prometheus exporter: %w", err)
		}
		opts = append(opts, sdkmetric.WithReader(exp))
		ln, err = net.Listen("tcp", c.metricsAddress)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.src("metrics-address"), err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			Registry:          reg,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
			EnableOpenMetrics: true,
		}))
		t.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		t.ln = ln
		t.metricsAddr = ln.Addr().String()
	}

	if ch.otlp {
		var exp sdkmetric.Exporter
		switch ch.protocol {
		case protoGRPC:
			exp, err = otlpmetricgrpc.New(ctx)
		default:
			exp, err = otlpmetrichttp.New(ctx)
		}
		if err != nil {
			if ln != nil {
				ln.Close()
			}
			return nil, fmt.Errorf("otlp metrics exporter (%s): %w", ch.protocol, err)
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
		t.otlp = ch.protocol
	}

	t.mp = sdkmetric.NewMeterProvider(opts...)
	return t, nil
}

// otelErrorHandler logs the errors the OpenTelemetry SDK hands to
// otel.Handle (failed background exports: collector down, refused, ...)
// at Warn: the metrics are lost, the plugin keeps serving.
//
// The SDK's own log lines go to the same logger (otel.SetLogger in
// startTelemetry) instead of its default plain-text stderr logger. logr
// maps OTel's levels to slog ones: errors to Error, warnings (V(1)) to
// Info-1 and informational lines (V(4)) to Debug, so the warnings show
// with --log-level debug.
func otelErrorHandler(logger *slog.Logger) otel.ErrorHandler {
	return otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("opentelemetry error", "err", err)
	})
}

// oneLine joins the lines of a joined error with "; ".
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// serve starts answering /metrics on the listener bound by startTelemetry.
// Scrapes that arrive earlier wait in the listen backlog.
func (t *telemetry) serve() {
	if t.srv == nil {
		return
	}
	t.served = true
	go func() {
		if err := t.srv.Serve(t.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.serveErr <- fmt.Errorf("metrics endpoint: %w", err)
		}
	}()
}

// shutdown stops /metrics, then flushes and stops every reader (a final
// OTLP export happens here).
func (t *telemetry) shutdown(ctx context.Context) error {
	var errs []error
	if t.srv != nil && !t.served {
		t.ln.Close()
	}
	if t.srv != nil && t.served {
		if err := t.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("metrics endpoint: %w", err))
		}
	}
	if err := t.mp.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("meter provider: %w", err))
	}
	return errors.Join(errs...)
}
