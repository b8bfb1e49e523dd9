package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// gaugePrefix selects the plugin's own gauges.
const gaugePrefix = "rds_csi_"

// scrapeGauges fetches a Prometheus text endpoint and returns the rds_csi_*
// gauges as sorted "name{labels} value" lines. Labels the OpenTelemetry
// exporter adds to every series (otel_scope_*) are left out.
func scrapeGauges(ctx context.Context, url string) ([]string, error) {
	families, err := scrape(ctx, url)
	if err != nil {
		return nil, err
	}
	var lines []string
	for name, mf := range families {
		if !strings.HasPrefix(name, gaugePrefix) || mf.GetType() != dto.MetricType_GAUGE {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				if strings.HasPrefix(l.GetName(), "otel_scope_") {
					continue
				}
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			ls := ""
			if len(labels) > 0 {
				ls = "{" + strings.Join(labels, ",") + "}"
			}
			lines = append(lines, fmt.Sprintf("%s%s = %g", name, ls, m.GetGauge().GetValue()))
		}
	}
	slices.Sort(lines)
	return lines, nil
}

// scrape fetches and parses a Prometheus text-format endpoint.
func scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", url, err)
	}
	return families, nil
}
