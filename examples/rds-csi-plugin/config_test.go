package main

import (
	"errors"
	"flag"
	"maps"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/rdscsi"
)

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestParseConfigFlagBeatsEnvironment(t *testing.T) {
	c, err := parseConfig(
		[]string{"--simulate", "--mode", "controller", "--node-id", "from-flag"},
		envOf("RDS_CSI_MODE", "node", "RDS_CSI_NODE_ID", "from-env", "RDS_CSI_KNOWN_NODES", "a, b,,c",
			"RDS_CSI_RDS_DIAL_TIMEOUT", "3s"))
	if err != nil {
		t.Fatal(err)
	}
	if c.mode != "controller" || c.nodeID != "from-flag" {
		t.Errorf("mode %q node %q: the command line must win over the environment", c.mode, c.nodeID)
	}
	if c.rdsDialTimeout != 3*time.Second {
		t.Errorf("rds-dial-timeout %v: the environment must fill unset flags", c.rdsDialTimeout)
	}
	if c.src("mode") != "--mode" || c.src("rds-dial-timeout") != "RDS_CSI_RDS_DIAL_TIMEOUT" {
		t.Errorf("sources: %v", c.source)
	}
	got := c.knownNodeIDs()
	for _, n := range []string{"from-flag", "a", "b", "c"} {
		if !got[n] {
			t.Errorf("known nodes %v lack %q", got, n)
		}
	}
	if len(got) != 4 {
		t.Errorf("known nodes %v: want exactly 4", got)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := parseConfig([]string{"--simulate"}, envOf())
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if c.endpoint != defaultEndpoint || c.mode != modeAll || c.nodeID != host || c.metricsAddress != "" ||
		c.logFormat != "text" || c.logLevel != "info" || c.driverName != "rds.csi.srvlab.io" {
		t.Errorf("unexpected defaults: %+v", c)
	}
}

func TestParseConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"unknown flag", []string{"--bogus"}, nil, "flag provided but not defined: -bogus"},
		{"mode", []string{"--mode", "both"}, nil, `--mode: must be controller, node or all, got "both"`},
		{"mode from env", nil, []string{"RDS_CSI_MODE", "both"}, `RDS_CSI_MODE: must be controller, node or all`},
		{"duration from env", nil, []string{"RDS_CSI_RDS_DIAL_TIMEOUT", "soon"}, `invalid value "soon" for RDS_CSI_RDS_DIAL_TIMEOUT`},
		{"log format", []string{"--simulate", "--log-format", "xml"}, nil, "--log-format: must be text or json"},
		{"no address", []string{"--mode", "controller"}, nil, "--rds-address is required"},
		{"no key", []string{"--rds-address", "h"}, nil, "--rds-key-file is required"},
		{"no host key", []string{"--rds-address", "h", "--rds-key-file", "k"}, nil, "host key must be pinned"},
		{"both host keys", []string{"--rds-address", "h", "--rds-key-file", "k", "--rds-host-key", "x", "--rds-known-hosts", "y"}, nil, "mutually exclusive"},
		{"simulate-dir alone", []string{"--simulate-dir", "/tmp/x", "--mode", "node"}, nil, "--simulate-dir needs --simulate"},
		{"relative volume path", []string{"--simulate", "--volume-path", "k8s"}, nil, "--volume-path: must be an absolute path"},
		{"bad address", []string{"--rds-address", "a b", "--rds-key-file", "k", "--rds-host-key", "x"}, nil, "--rds-address: not a host[:port] address"},
		{"negative max volumes", []string{"--simulate", "--max-volumes", "-1"}, nil, "--max-volumes: must be 0 (no limit) or positive, got -1"},
		{"negative max volumes from env", []string{"--simulate"}, []string{"RDS_CSI_MAX_VOLUMES", "-3"}, "RDS_CSI_MAX_VOLUMES: must be 0 (no limit) or positive, got -3"},
		{"max volumes not a number", []string{"--simulate"}, []string{"RDS_CSI_MAX_VOLUMES", "many"}, `invalid value "many" for RDS_CSI_MAX_VOLUMES`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(tc.args, envOf(tc.env...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans several lines: %q", err)
			}
		})
	}
}

func TestParseConfigNodeNeedsNoRDS(t *testing.T) {
	c, err := parseConfig([]string{"--mode", "node", "--node-id", "n1"}, envOf())
	if err != nil {
		t.Fatalf("a node-only plugin does not talk to the RDS: %v", err)
	}
	if c.hasController() || !c.hasNode() {
		t.Fatalf("mode node: controller %v node %v", c.hasController(), c.hasNode())
	}
}

func TestParseConfigHelp(t *testing.T) {
	if _, err := parseConfig([]string{"--help"}, envOf()); !errors.Is(err, errHelp) {
		t.Fatalf("--help: got %v, want errHelp", err)
	}
}

func TestNormaliseAddress(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.5":      "10.0.0.5:22",
		"10.0.0.5:2222": "10.0.0.5:2222",
		"rds.lan":       "rds.lan:22",
		"[fd00::5]":     "[fd00::5]:22",
		"fd00::5":       "[fd00::5]:22",
		"[fd00::5]:22":  "[fd00::5]:22",
	} {
		got, err := normaliseAddress(in)
		if err != nil || got != want {
			t.Errorf("normaliseAddress(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	c := &config{rdsAddress: "10.0.0.5:22"}
	if got := c.defaultNVMeAddress(); got != "10.0.0.5" {
		t.Errorf("default NVMe address %q, want the RDS host", got)
	}
}

func TestChooseExporters(t *testing.T) {
	cases := []struct {
		name     string
		env      []string
		metrics  string
		otlp     bool
		protocol string
		err      string
	}{
		{"nothing", nil, "", false, "", ""},
		{"prometheus only", nil, ":9090", false, "", ""},
		{"endpoint", []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"}, "", true, protoHTTP, ""},
		{"metrics endpoint grpc", []string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"}, "", true, protoGRPC, ""},
		{"signal protocol wins", []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"}, "", true, protoHTTP, ""},
		{"forced otlp", []string{"OTEL_METRICS_EXPORTER", "otlp"}, "", true, protoHTTP, ""},
		{"none beats endpoint", []string{"OTEL_METRICS_EXPORTER", "none", "OTEL_EXPORTER_OTLP_ENDPOINT", "x"}, "", false, "", ""},
		{"prometheus listed", []string{"OTEL_METRICS_EXPORTER", "prometheus,otlp"}, ":9090", true, protoHTTP, ""},
		{"prometheus without address", []string{"OTEL_METRICS_EXPORTER", "prometheus"}, "", false, "", "--metrics-address is empty"},
		{"unknown exporter", []string{"OTEL_METRICS_EXPORTER", "zipkin"}, "", false, "", `unsupported exporter "zipkin"`},
		{"https endpoint", []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "https://c.example:4318", "OTEL_METRIC_EXPORT_INTERVAL", "5000", "OTEL_METRIC_EXPORT_TIMEOUT", "1000"}, "", true, protoHTTP, ""},
		{"endpoint without scheme", []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"}, "", false, "", `OTEL_EXPORTER_OTLP_ENDPOINT: want a URL`},
		{"metrics endpoint without host", []string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http:///v1/metrics"}, "", false, "", `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: want a URL`},
		{"unix endpoint", []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "unix:///run/otel.sock"}, "", false, "", `OTEL_EXPORTER_OTLP_ENDPOINT: want a URL`},
		{"interval with unit", []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318", "OTEL_METRIC_EXPORT_INTERVAL", "10s"}, "", false, "", `OTEL_METRIC_EXPORT_INTERVAL: want a positive number of milliseconds, got "10s"`},
		{"zero timeout", []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318", "OTEL_METRIC_EXPORT_TIMEOUT", "0"}, "", false, "", `OTEL_METRIC_EXPORT_TIMEOUT: want a positive number`},
		{"json protocol", []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"}, "", false, "", `unsupported protocol "http/json"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := chooseExporters(envOf(tc.env...), tc.metrics)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want error %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ch.otlp != tc.otlp || ch.protocol != tc.protocol {
				t.Fatalf("got %+v, want otlp %v protocol %q", ch, tc.otlp, tc.protocol)
			}
		})
	}
}

// readme returns examples/README.md.
func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The flags table in examples/README.md lists every flag, with its
// environment variable and default, and nothing else.
func TestREADMEFlagsTable(t *testing.T) {
	doc := readme(t)
	row := regexp.MustCompile("(?m)^\\| `--([a-z-]+)` \\| (`[A-Z_]+`|—) \\| ([^|]+) \\|")
	documented := map[string][2]string{}
	for _, m := range row.FindAllStringSubmatch(doc, -1) {
		documented[m[1]] = [2]string{strings.Trim(m[2], "`"), strings.TrimSpace(m[3])}
	}
	var c config
	fs := newFlagSet(&c)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		d, ok := documented[f.Name]
		if !ok {
			t.Errorf("--%s is not in the README flags table", f.Name)
			return
		}
		wantEnv := envName(f.Name)
		if noEnv[f.Name] {
			wantEnv = "—"
		}
		if d[0] != wantEnv {
			t.Errorf("--%s: README says %s, want %s", f.Name, d[0], wantEnv)
		}
		want := "—"
		if f.DefValue != "" && f.DefValue != "false" {
			want = "`" + f.DefValue + "`"
		}
		if d[1] != want {
			t.Errorf("--%s: README default %s, want %s", f.Name, d[1], want)
		}
	})
	if len(documented) != n {
		t.Errorf("README documents %d flags, the plugin has %d", len(documented), n)
	}
}

// The embedding snippet in the README is the body of Example_embed, which
// the compiler checks.
func TestREADMEEmbedSnippet(t *testing.T) {
	doc := readme(t)
	_, after, ok := strings.Cut(doc, "## Embedding")
	if !ok {
		t.Fatal("README has no embedding section")
	}
	_, code, ok := strings.Cut(after, "```go\n")
	if !ok {
		t.Fatal("embedding section has no go code block")
	}
	code, _, _ = strings.Cut(code, "```")
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for l := range strings.SplitSeq(string(src), "\n") {
		have[strings.TrimSpace(l)] = true
	}
	for l := range strings.SplitSeq(code, "\n") {
		if l = strings.TrimSpace(l); l != "" && !have[l] {
			t.Errorf("README line not in Example_embed: %s", l)
		}
	}
}

// Every flag can be set from its RDS_CSI_* variable, with one exception:
// --version, which acts instead of configuring (noEnv).
func TestEveryFlagHasEnvironmentFallback(t *testing.T) {
	exceptions := map[string]bool{"version": true}
	if !maps.Equal(noEnv, exceptions) {
		t.Fatalf("flags without environment fallback: %v, want exactly %v", noEnv, exceptions)
	}
	samples := map[string]string{
		"endpoint": "unix:///tmp/env.sock", "mode": "controller", "node-id": "env-node",
		"driver-name": "env.csi.example.com", "rds-address": "10.0.0.9", "rds-user": "csi",
		"rds-key-file": "/etc/env/key", "rds-known-hosts": "/etc/env/known_hosts",
		"rds-host-key": "ssh-ed25519 AAAA", "rds-dial-timeout": "3s", "volume-path": "/env-pool/k8s",
		"state-file": "/var/lib/env/attachments.json", "node-state-dir": "/var/lib/env/node",
		"metrics-address": ":9999", "log-format": "json", "log-level": "debug", "known-nodes": "a,b",
		"nvme-address": "10.0.0.8", "simulate": "true", "simulate-dir": "/tmp/env-sim", "max-volumes": "7",
		"state-truncate-at-corruption": "true",
	}
	var all []string
	newFlagSet(&config{}).VisitAll(func(f *flag.Flag) { all = append(all, f.Name) })
	// Mutually exclusive flags go in separate rounds.
	rounds := [][]string{nil, {"rds-host-key", "rds-address", "rds-key-file"}}
	for _, name := range all {
		if exceptions[name] {
			continue
		}
		if _, ok := samples[name]; !ok {
			t.Errorf("--%s has no sample value in this test", name)
			continue
		}
		if name != "rds-host-key" {
			rounds[0] = append(rounds[0], name)
		}
	}
	for _, round := range rounds {
		var env []string
		for _, name := range round {
			env = append(env, envName(name), samples[name])
		}
		c, err := parseConfig(nil, envOf(env...))
		if err != nil {
			t.Fatalf("environment %v: %v", env, err)
		}
		for _, name := range round {
			if c.src(name) != envName(name) {
				t.Errorf("--%s was not taken from %s", name, envName(name))
			}
		}
		if c.nodeID != "env-node" && c.rdsHostKey == "" {
			t.Errorf("node ID %q, want env-node", c.nodeID)
		}
	}
}

// RDS_CSI_VERSION in the environment (a pod's env, a stray export) is
// ignored: only --version prints the version.
func TestVersionHasNoEnvironmentFallback(t *testing.T) {
	c, err := parseConfig([]string{"--simulate"}, envOf("RDS_CSI_VERSION", "true"))
	if err != nil {
		t.Fatal(err)
	}
	if c.version || c.source["version"] != "" {
		t.Fatalf("RDS_CSI_VERSION=true set version=%v (source %q)", c.version, c.source["version"])
	}
	// Ignored, so not even a bad value is an error.
	if _, err := parseConfig([]string{"--simulate"}, envOf("RDS_CSI_VERSION", "perhaps")); err != nil {
		t.Fatalf("RDS_CSI_VERSION=perhaps: %v", err)
	}
	if c, err := parseConfig([]string{"--version"}, envOf()); err != nil || !c.version {
		t.Fatalf("--version: version=%v, %v", c != nil && c.version, err)
	}
	var usageText strings.Builder
	usage(&usageText)
	if strings.Contains(usageText.String(), "RDS_CSI_VERSION") {
		t.Errorf("usage offers RDS_CSI_VERSION:\n%s", usageText.String())
	}
}

func TestParseConfigMaxVolumes(t *testing.T) {
	c, err := parseConfig([]string{"--simulate"}, envOf())
	if err != nil {
		t.Fatal(err)
	}
	if c.maxVolumes != rdscsi.DefaultMaxVolumesPerNode {
		t.Errorf("default max volumes %d, want %d", c.maxVolumes, rdscsi.DefaultMaxVolumesPerNode)
	}
	for _, tc := range []struct {
		args []string
		env  []string
		want int
	}{
		{[]string{"--simulate", "--max-volumes", "0"}, nil, 0},
		{[]string{"--simulate"}, []string{"RDS_CSI_MAX_VOLUMES", "12"}, 12},
		{[]string{"--simulate", "--max-volumes", "5"}, []string{"RDS_CSI_MAX_VOLUMES", "12"}, 5},
	} {
		c, err := parseConfig(tc.args, envOf(tc.env...))
		if err != nil || c.maxVolumes != tc.want {
			t.Errorf("%v %v: max volumes %v, %v; want %d", tc.args, tc.env, c, err, tc.want)
		}
	}
}
