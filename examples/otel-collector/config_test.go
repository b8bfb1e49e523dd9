package otelcollector

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// collectorConfig is the part of the Collector's configuration schema the
// tests check. Component settings stay untyped: the Collector validates
// them, we only check the structure around them.
type collectorConfig struct {
	Receivers  map[string]map[string]any `yaml:"receivers"`
	Processors map[string]map[string]any `yaml:"processors"`
	Exporters  map[string]map[string]any `yaml:"exporters"`
	Extensions map[string]map[string]any `yaml:"extensions"`
	Service    struct {
		Extensions []string            `yaml:"extensions"`
		Pipelines  map[string]pipeline `yaml:"pipelines"`
	} `yaml:"service"`
}

type pipeline struct {
	Receivers  []string `yaml:"receivers"`
	Processors []string `yaml:"processors"`
	Exporters  []string `yaml:"exporters"`
}

// Component types this configuration may use; a misspelt type would make
// the Collector refuse to start.
var (
	knownReceivers  = []string{"otlp", "prometheus"}
	knownProcessors = []string{"batch", "memory_limiter", "resource", "attributes", "filter"}
	knownExporters  = []string{"debug", "prometheus", "prometheusremotewrite", "otlp", "otlphttp"}
	signalTypes     = []string{"metrics", "traces", "logs"}
)

func loadConfig(t testing.TB, path string) collectorConfig {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg collectorConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // an unknown top-level section is a typo
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cfg
}

// componentType is the part of a component ID before "/": "prometheus"
// for "prometheus/otlp".
func componentType(id string) string {
	typ, _, _ := strings.Cut(id, "/")
	return typ
}

// checkConfig returns every structural problem of cfg.
func checkConfig(cfg collectorConfig) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	checkDefined := func(kind string, defined map[string]map[string]any, known []string) {
		for id := range defined {
			if !slices.Contains(known, componentType(id)) {
				bad("%s %q: unknown component type %q", kind, id, componentType(id))
			}
		}
	}
	checkDefined("receiver", cfg.Receivers, knownReceivers)
	checkDefined("processor", cfg.Processors, knownProcessors)
	checkDefined("exporter", cfg.Exporters, knownExporters)

	if len(cfg.Service.Pipelines) == 0 {
		bad("service.pipelines is empty")
	}
	used := map[string]bool{}
	for name, p := range cfg.Service.Pipelines {
		if !slices.Contains(signalTypes, componentType(name)) {
			bad("pipeline %q: unknown signal type", name)
		}
		if len(p.Receivers) == 0 || len(p.Exporters) == 0 {
			bad("pipeline %q: needs at least one receiver and one exporter", name)
		}
		refs := func(kind string, ids []string, defined map[string]map[string]any) {
			seen := map[string]bool{}
			for _, id := range ids {
				if _, ok := defined[id]; !ok {
					bad("pipeline %q: %s %q is not defined", name, kind, id)
				}
				if seen[id] {
					bad("pipeline %q: %s %q listed twice", name, kind, id)
				}
				seen[id] = true
				used[kind+" "+id] = true
			}
		}
		refs("receiver", p.Receivers, cfg.Receivers)
		refs("processor", p.Processors, cfg.Processors)
		refs("exporter", p.Exporters, cfg.Exporters)
		// memory_limiter must see data first to be able to refuse it.
		if i := slices.Index(p.Processors, "memory_limiter"); i > 0 {
			bad("pipeline %q: memory_limiter must be the first processor", name)
		}
	}
	for _, ext := range cfg.Service.Extensions {
		if _, ok := cfg.Extensions[ext]; !ok {
			bad("service extension %q is not defined", ext)
		}
	}
	unused := func(kind string, defined map[string]map[string]any) {
		for id := range defined {
			if !used[kind+" "+id] {
				bad("%s %q is defined but no pipeline uses it", kind, id)
			}
		}
	}
	unused("receiver", cfg.Receivers)
	unused("processor", cfg.Processors)
	unused("exporter", cfg.Exporters)

	// Two exporters listening on one port cannot both start.
	ports := map[string]string{}
	for id, settings := range cfg.Exporters {
		// The Collector (v0.165) warns about it at every start and a
		// feature gate turns it into an error.
		if _, old := settings["resource_to_telemetry_conversion"]; old && componentType(id) == "prometheus" {
			bad("exporter %q: resource_to_telemetry_conversion is deprecated, use resource_constant_labels", id)
		}
		ep, _ := settings["endpoint"].(string)
		if componentType(id) != "prometheus" || ep == "" {
			continue
		}
		_, port, err := net.SplitHostPort(ep)
		if err != nil {
			bad("exporter %q: endpoint %q: %v", id, ep, err)
			continue
		}
		if other, dup := ports[port]; dup {
			bad("exporters %q and %q both listen on port %s", id, other, port)
		}
		ports[port] = id
	}
	sort.Strings(problems)
	return problems
}

func TestConfigIsConsistent(t *testing.T) {
	cfg := loadConfig(t, "config.yaml")
	for _, p := range checkConfig(cfg) {
		t.Error(p)
	}
}

// The checker must catch the mistakes it exists for; otherwise a passing
// TestConfigIsConsistent proves nothing.
func TestCheckConfigFindsMistakes(t *testing.T) {
	mutations := map[string]func(*collectorConfig){
		"undefined exporter": func(c *collectorConfig) {
			p := c.Service.Pipelines["metrics/otlp"]
			p.Exporters = append(p.Exporters, "prometheus/missing")
			c.Service.Pipelines["metrics/otlp"] = p
		},
		"undefined receiver": func(c *collectorConfig) {
			p := c.Service.Pipelines["metrics/scraped"]
			p.Receivers = []string{"otlp/other"}
			c.Service.Pipelines["metrics/scraped"] = p
		},
		"misspelt type": func(c *collectorConfig) {
			c.Exporters["promethues"] = map[string]any{}
		},
		"unused receiver": func(c *collectorConfig) {
			c.Receivers["otlp/spare"] = map[string]any{}
		},
		"bad pipeline type": func(c *collectorConfig) {
			c.Service.Pipelines["metric/x"] = c.Service.Pipelines["metrics/otlp"]
		},
		"port clash": func(c *collectorConfig) {
			c.Exporters["prometheus/scraped"]["endpoint"] = c.Exporters["prometheus/otlp"]["endpoint"]
		},
		"deprecated resource conversion": func(c *collectorConfig) {
			c.Exporters["prometheus/scraped"]["resource_to_telemetry_conversion"] = map[string]any{"enabled": true}
		},
	}
	for name, mutate := range mutations {
		t.Run(name, func(t *testing.T) {
			cfg := loadConfig(t, "config.yaml")
			mutate(&cfg)
			if len(checkConfig(cfg)) == 0 {
				t.Fatal("mistake not detected")
			}
		})
	}
}

func TestUnknownSectionRejected(t *testing.T) {
	path := t.TempDir() + "/bad.yaml"
	if err := os.WriteFile(path, []byte("receivers: {}\nservise: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var cfg collectorConfig
	f, _ := os.ReadFile(path)
	dec := yaml.NewDecoder(bytes.NewReader(f))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err == nil {
		t.Fatal("a misspelt top-level section was accepted")
	}
}

// The ports are part of the contract with the plugin and README.md.
func TestEndpoints(t *testing.T) {
	cfg := loadConfig(t, "config.yaml")
	protocols, _ := cfg.Receivers["otlp"]["protocols"].(map[string]any)
	for proto, port := range map[string]string{"grpc": "4317", "http": "4318"} {
		p, _ := protocols[proto].(map[string]any)
		ep, _ := p["endpoint"].(string)
		if _, got, err := net.SplitHostPort(ep); err != nil || got != port {
			t.Errorf("otlp %s endpoint = %q, want port %s", proto, ep, port)
		}
	}
	targets := scrapeTargets(t, cfg)
	if !slices.Contains(targets, "127.0.0.1:9090") {
		t.Errorf("scrape targets %v do not include the plugin's documented --metrics-address 127.0.0.1:9090", targets)
	}
}

// scrapeTargets lists the static targets of the prometheus receiver.
func scrapeTargets(t testing.TB, cfg collectorConfig) []string {
	t.Helper()
	pc, _ := cfg.Receivers["prometheus"]["config"].(map[string]any)
	jobs, _ := pc["scrape_configs"].([]any)
	if len(jobs) == 0 {
		t.Fatal("prometheus receiver has no scrape_configs")
	}
	var targets []string
	for _, j := range jobs {
		job, _ := j.(map[string]any)
		if name, _ := job["job_name"].(string); name == "" {
			t.Errorf("scrape config without job_name: %v", job)
		}
		statics, _ := job["static_configs"].([]any)
		for _, s := range statics {
			sc, _ := s.(map[string]any)
			ts, _ := sc["targets"].([]any)
			for _, tg := range ts {
				target, _ := tg.(string)
				if _, _, err := net.SplitHostPort(target); err != nil {
					t.Errorf("scrape target %q: %v", target, err)
				}
				targets = append(targets, target)
			}
		}
	}
	return targets
}
