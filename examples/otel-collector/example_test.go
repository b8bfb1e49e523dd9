package otelcollector

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Example prints the metric pipelines of config.yaml: where each gets its
// data and where it sends it.
func Example() {
	data, err := os.ReadFile("config.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	var cfg struct {
		Service struct {
			Pipelines map[string]struct {
				Receivers []string `yaml:"receivers"`
				Exporters []string `yaml:"exporters"`
			} `yaml:"pipelines"`
		} `yaml:"service"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		fmt.Println(err)
		return
	}
	var names []string
	for name := range cfg.Service.Pipelines {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := cfg.Service.Pipelines[name]
		fmt.Printf("%s: %s -> %s\n", name, strings.Join(p.Receivers, ","), strings.Join(p.Exporters, ","))
	}
	// Output:
	// metrics/otlp: otlp -> debug,prometheus/otlp
	// metrics/scraped: prometheus -> debug,prometheus/scraped
}
