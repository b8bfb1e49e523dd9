package main

import (
	"errors"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

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

// configErrorCase is a configuration parseConfig must refuse with one
// line containing want.
type configErrorCase struct {
	name string
	args []string
	env  []string
	want string
}

func checkConfigErrors(t *testing.T, cases []configErrorCase) {
	t.Helper()
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

func TestParseConfigErrors(t *testing.T) {
	cases := []configErrorCase{
		{"unknown flag", []string{"--bogus"}, nil, "unknown flag --bogus (see --help)"},
		{"flag without value", []string{"--mode"}, nil, "--mode needs a value (see --help)"},
		// Go's own message is `invalid value "5" for flag
		// -rds-dial-timeout: parse error`.
		{"duration without unit", []string{"--rds-dial-timeout", "5"}, nil, `--rds-dial-timeout: want a duration with its unit, such as 15s or 1m, got "5"`},
		{"bool", []string{"--simulate=perhaps"}, nil, `--simulate: want true or false, got "perhaps"`},
		{"bool from env", nil, []string{"RDS_CSI_SIMULATE", "perhaps"}, `RDS_CSI_SIMULATE: want true or false, got "perhaps"`},
		{"metrics port alone", []string{"--simulate", "--metrics-address", "9091"}, nil, `--metrics-address: want host:port, got "9091"; to listen on every address use ":9091"`},
		{"metrics port alone from env", []string{"--simulate"}, []string{"RDS_CSI_METRICS_ADDRESS", "9091"}, `RDS_CSI_METRICS_ADDRESS: want host:port, got "9091"; to listen on every address use ":9091"`},
		{"metrics address without port", []string{"--simulate", "--metrics-address", "localhost"}, nil, `--metrics-address: want host:port such as :9090 or 127.0.0.1:9090, got "localhost"`},
		{"volume path is a pool", []string{"--simulate", "--volume-path", "/storage-pool"}, nil, `--volume-path: must be a directory below a pool on the RDS, such as /storage-pool/k8s, got "/storage-pool"`},
		{"mode", []string{"--mode", "both"}, nil, `--mode: must be controller, node or all, got "both"`},
		{"mode from env", nil, []string{"RDS_CSI_MODE", "both"}, `RDS_CSI_MODE: must be controller, node or all`},
		{"duration from env", nil, []string{"RDS_CSI_RDS_DIAL_TIMEOUT", "5"}, `RDS_CSI_RDS_DIAL_TIMEOUT: want a duration with its unit, such as 15s or 1m, got "5"`},
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
		{"max volumes not a number", []string{"--simulate"}, []string{"RDS_CSI_MAX_VOLUMES", "many"}, `RDS_CSI_MAX_VOLUMES: want a whole number, got "many"`},
		// Values that rdscsi's constructors refused only after the RDS
		// was dialled, naming rdscsi's parameter instead of the flag:
		// `controller: rdscsi: invalid argument: nvmeAddress "a b" ...`.
		{"nvme address", []string{"--simulate", "--nvme-address", "a b"}, nil, `--nvme-address: want an IP address or host name, such as 10.0.0.5 or rds.example.com, got "a b"`},
		{"nvme address from env", []string{"--simulate"}, []string{"RDS_CSI_NVME_ADDRESS", "rds_1.lan"}, `RDS_CSI_NVME_ADDRESS: want an IP address or host name`},
		{"nvme address with port", []string{"--simulate", "--nvme-address", "10.0.0.5:4420"}, nil,
			`--nvme-address: want an address without a port, got "10.0.0.5:4420"; give the port with --nvme-port: --nvme-address 10.0.0.5 --nvme-port 4420`},
		{"nvme IPv6 address with port", []string{"--simulate", "--nvme-address", "[fd00::5]:4421"}, nil, `give the port with --nvme-port: --nvme-address fd00::5 --nvme-port 4421`},
		{"nvme port zero", []string{"--simulate", "--nvme-port", "0"}, nil, "--nvme-port: want a TCP port from 1 to 65535, such as 4420, got 0"},
		{"nvme port too big", []string{"--simulate"}, []string{"RDS_CSI_NVME_PORT", "70000"}, "RDS_CSI_NVME_PORT: want a TCP port from 1 to 65535, such as 4420, got 70000"},
		{"nvme port not a number", []string{"--simulate", "--nvme-port", "nvme"}, nil, `--nvme-port: want a whole number, got "nvme"`},
		{"rds host unusable for nvme", []string{"--rds-address", "rds_1.lan:22", "--rds-key-file", "k", "--rds-host-key", "x"}, nil,
			`--rds-address: its host "rds_1.lan" is not an IP address or host name NVMe/TCP can use; set --nvme-address, such as --nvme-address 10.0.0.5`},
		{"volume path characters", []string{"--simulate", "--volume-path", "/storage-pool/k 8s"}, nil,
			`--volume-path: want at most 147 characters (the backing files below it must fit the device's 255) of letters, digits, '.', '_', '-' and '/', without . or .. components, such as /storage-pool/k8s, got "/storage-pool/k 8s"`},
		{"volume path dot-dot", []string{"--simulate"}, []string{"RDS_CSI_VOLUME_PATH", "/storage-pool/../etc"}, `RDS_CSI_VOLUME_PATH: want at most 147 characters`},
		{"volume path too long", []string{"--simulate", "--volume-path", "/storage-pool/" + strings.Repeat("v", 200)}, nil, `--volume-path: want at most 147 characters`},
		// Caught by NewIdentityServer, after the RDS dial.
		{"driver name", []string{"--simulate", "--driver-name", "rds csi"}, nil, `--driver-name: want a domain name of at most 63 characters, such as rds.csi.srvlab.io, got "rds csi"`},
		{"driver name too long", []string{"--simulate", "--driver-name", strings.Repeat("d", 64)}, nil, `--driver-name: want a domain name of at most 63 characters`},
		{"driver name from env", []string{"--simulate"}, []string{"RDS_CSI_DRIVER_NAME", "-csi"}, `RDS_CSI_DRIVER_NAME: want a domain name`},
		{"empty driver name", []string{"--simulate", "--driver-name", ""}, nil, `--driver-name: want a domain name of at most 63 characters, such as rds.csi.srvlab.io, got ""`},
		// Caught by rdscsi.Listen, after the RDS dial.
		{"endpoint without scheme", []string{"--simulate", "--endpoint", "/csi/csi.sock"}, nil,
			`--endpoint: want unix:///path/to/socket or tcp://host:port, such as unix:///csi/csi.sock or tcp://127.0.0.1:10000, got "/csi/csi.sock"`},
		{"endpoint relative socket", []string{"--simulate", "--endpoint", "unix://csi.sock"}, nil, `--endpoint: want unix:///path/to/socket`},
		{"endpoint without port", []string{"--simulate"}, []string{"RDS_CSI_ENDPOINT", "tcp://localhost"}, `RDS_CSI_ENDPOINT: want unix:///path/to/socket`},
		{"empty endpoint", []string{"--simulate", "--endpoint", ""}, nil, `--endpoint: want unix:///path/to/socket`},
		// Caught by rdsclient.Dial, without the flag's name.
		{"rds user with space", []string{"--rds-address", "h", "--rds-key-file", "k", "--rds-host-key", "x", "--rds-user", "ad min"}, nil,
			`--rds-user: want a RouterOS user name without spaces, such as admin, got "ad min"`},
		{"empty rds user", []string{"--rds-address", "h", "--rds-key-file", "k", "--rds-host-key", "x", "--rds-user", ""}, nil, `--rds-user: want a RouterOS user name`},
		// Caught by NewNodeServer, after the state directory was
		// created relative to the working directory.
		{"relative node state dir", []string{"--mode", "node", "--node-id", "n", "--node-state-dir", "node"}, nil,
			`--node-state-dir: must be an absolute path, such as /var/lib/rds-csi/node, got "node"`},
	}
	checkConfigErrors(t, cases)
}

// The wrapping that rephrases refused values keeps bool flags usable
// without a value, and good values of every type parse.
func TestParseConfigCheckedValues(t *testing.T) {
	c, err := parseConfig([]string{"--simulate", "--rds-dial-timeout", "1m30s", "--max-volumes", "7",
		"--metrics-address", "[::1]:9091"}, envOf())
	if err != nil {
		t.Fatal(err)
	}
	if !c.simulate || c.rdsDialTimeout != 90*time.Second || c.maxVolumes != 7 || c.metricsAddress != "[::1]:9091" {
		t.Fatalf("parsed %+v", c)
	}
	if c.nvmePort != rdscsi.DefaultNVMePort {
		t.Errorf("default --nvme-port %d, want %d", c.nvmePort, rdscsi.DefaultNVMePort)
	}
}

// The checks that stand in for rdscsi's at start refuse nothing the
// driver takes.
func TestParseConfigGoodValues(t *testing.T) {
	real := []string{"--rds-key-file", "k", "--rds-host-key", "x"}
	for _, args := range [][]string{
		{"--simulate", "--nvme-address", "10.0.0.5", "--nvme-port", "4421"},
		{"--simulate", "--nvme-address", "fd00::5", "--nvme-port", "65535"},
		{"--simulate", "--nvme-address", "rds.example.com", "--volume-path", "/storage-pool/k8s/sub_dir-1.v2/"},
		{"--simulate", "--driver-name", "a.b-c.example.com", "--endpoint", "unix:/tmp/csi.sock"},
		{"--simulate", "--endpoint", "tcp://127.0.0.1:10000"},
		{"--simulate", "--endpoint", "tcp://:10000"},
		{"--simulate", "--endpoint", "UNIX:///tmp/csi.sock"},
		append([]string{"--rds-address", "[fd00::5]:2222", "--rds-user", "csi+ct"}, real...),
		append([]string{"--rds-address", "rds_1.lan", "--nvme-address", "10.0.0.5"}, real...),
		{"--mode", "node", "--node-id", "n", "--node-state-dir", "/run/rds-csi/node"},
	} {
		if _, err := parseConfig(args, envOf()); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}

	// A relative --simulate-dir is made absolute: the node's stage
	// records go below it, in a directory rdscsi wants absolute.
	c, err := parseConfig([]string{"--simulate", "--simulate-dir", "sim"}, envOf())
	if err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(wd, "sim"); c.simulateDir != want {
		t.Errorf("--simulate-dir sim became %q, want %q", c.simulateDir, want)
	}
}

// --nvme-address and --nvme-port are what volumes are created with.
func TestNVMeFlagsReachVolumeContext(t *testing.T) {
	dir := t.TempDir()
	s := startServing(t, nil, "--simulate", "--mode", "controller", "--node-id", "n1", "--log-format", "json",
		"--endpoint", "unix://"+filepath.Join(dir, "csi.sock"), "--nvme-address", "rds.example.com", "--nvme-port", "4421")
	vol := createVolume(t, csi.NewControllerClient(s.conn), "nvme-flags")
	vc := vol.GetVolumeContext()
	if vc[rdscsi.ParamNVMeAddress] != "rds.example.com" || vc[rdscsi.ParamNVMePort] != "4421" {
		t.Errorf("volume context %v, want nvmeAddress rds.example.com and nvmePort 4421", vc)
	}
	s.signal(syscall.SIGTERM)
	if code := s.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
}

// Every endpoint the start refuses, rdscsi.Listen refuses too: the check
// only brings the error forward, before the RDS is dialled.
func TestCheckEndpointAgreesWithListen(t *testing.T) {
	for _, ep := range []string{"", "/csi/csi.sock", "csi.sock", "unix://csi.sock", "unix:csi.sock", "tcp://", "tcp:///x",
		"http://127.0.0.1:1", "tcp://localhost", "tcp://127.0.0.1:1/x"} {
		if checkEndpoint(ep) == nil {
			t.Errorf("checkEndpoint(%q) accepted it", ep)
			continue
		}
		l, err := rdscsi.Listen(ep)
		if err == nil {
			l.Close()
			t.Errorf("rdscsi.Listen(%q) accepted what the start refuses", ep)
		}
	}
}

// A --node-state-dir the node cannot write stops the start with the flag
// named, instead of failing every NodeStageVolume later.
func TestCheckNodeStateDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c := &config{nodeStateDir: filepath.Join(dir, "ok", "node"), source: map[string]string{}}
	if err := c.checkNodeStateDir(); err != nil {
		t.Fatalf("writable directory: %v", err)
	}
	if ents, err := os.ReadDir(c.nodeStateDir); err != nil || len(ents) != 0 {
		t.Fatalf("the check left %v behind (%v)", ents, err)
	}

	c = &config{nodeStateDir: filepath.Join(file, "node"), source: map[string]string{"node-state-dir": "RDS_CSI_NODE_STATE_DIR"}}
	err := c.checkNodeStateDir()
	want := "RDS_CSI_NODE_STATE_DIR: the node cannot write its stage records in " + c.nodeStateDir + ": "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("parent is a file: got %v, want an error starting %q", err, want)
	}

	// A directory that exists but is read-only: MkdirAll succeeds, the
	// write does not. chmod does not stop root, a read-only mount does.
	t.Run("read-only", func(t *testing.T) {
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o700); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			if err := syscall.Mount("tmpfs", ro, "tmpfs", syscall.MS_RDONLY, "size=1m"); err != nil {
				t.Skipf("mounting a read-only tmpfs: %v", err)
			}
			t.Cleanup(func() { syscall.Unmount(ro, syscall.MNT_DETACH) })
		} else if err := os.Chmod(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		c := &config{nodeStateDir: ro, source: map[string]string{"node-state-dir": "--node-state-dir"}}
		err := c.checkNodeStateDir()
		want := "--node-state-dir: the node cannot write its stage records in " + ro + ": "
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("got %v, want an error starting %q", err, want)
		}
	})
}

// The default endpoint's directory (/csi, a pod's shared volume) is
// missing on a workstation: the error names the value used, though no
// flag set it, and the way out.
func TestListenError(t *testing.T) {
	c, err := parseConfig([]string{"--simulate"}, envOf())
	if err != nil {
		t.Fatal(err)
	}
	c.endpoint = "unix://" + filepath.Join(t.TempDir(), "absent", "csi.sock")
	_, lerr := rdscsi.Listen(c.endpoint)
	if lerr == nil {
		t.Fatal("listening in a missing directory succeeded")
	}
	got := c.listenError(lerr).Error()
	for _, want := range []string{"--endpoint (default " + c.endpoint + "): ", "no such file or directory",
		"--endpoint unix:///tmp/rds-csi.sock"} {
		if !strings.Contains(got, want) {
			t.Errorf("error %q does not contain %q", got, want)
		}
	}
	c.source["endpoint"] = "RDS_CSI_ENDPOINT"
	if got := c.listenError(lerr).Error(); !strings.HasPrefix(got, "RDS_CSI_ENDPOINT: ") {
		t.Errorf("endpoint from the environment: %q", got)
	}
}

// Each flag's entry in --help shows one default: a usage string that says
// "(default ...)" itself must not get the flag's default appended too.
func TestUsageOneDefaultPerFlag(t *testing.T) {
	var out strings.Builder
	usage(&out)
	entries := regexp.MustCompile(`(?m)^  --`).Split(out.String(), -1)[1:]
	var c config
	n := 0
	newFlagSet(&c).VisitAll(func(*flag.Flag) { n++ })
	if len(entries) != n {
		t.Fatalf("usage has %d flag entries, the plugin %d flags:\n%s", len(entries), n, out.String())
	}
	for _, e := range entries {
		if k := strings.Count(strings.ToLower(e), "default"); k > 1 {
			t.Errorf("--%s shows %d defaults", strings.TrimSpace(e), k)
		}
	}
	if !strings.Contains(out.String(), `(default "`+defaultStateFile+`")`) {
		t.Errorf("usage lacks --state-file's default:\n%s", out.String())
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

// Every flag can be set from its RDS_CSI_* variable, with two exceptions:
// --version and --check-config, which act instead of configuring (noEnv).
func TestEveryFlagHasEnvironmentFallback(t *testing.T) {
	exceptions := map[string]bool{"version": true, "check-config": true}
	if !maps.Equal(noEnv, exceptions) {
		t.Fatalf("flags without environment fallback: %v, want exactly %v", noEnv, exceptions)
	}
	samples := map[string]string{
		"endpoint": "unix:///tmp/env.sock", "mode": "controller", "node-id": "env-node",
		"driver-name": "env.csi.example.com", "rds-address": "10.0.0.9", "rds-user": "csi",
		"rds-key-file": "/etc/env/key", "rds-known-hosts": "/etc/env/known_hosts",
		"rds-host-key": "ssh-ed25519 AAAA", "rds-dial-timeout": "3s", "volume-path": "/env-pool/k8s",
		"state-file": "/var/lib/env/attachments.log", "node-state-dir": "/var/lib/env/node",
		"metrics-address": ":9999", "log-format": "json", "log-level": "debug", "known-nodes": "a,b",
		"nvme-address": "10.0.0.8", "nvme-port": "4421", "simulate": "true", "simulate-dir": "/tmp/env-sim", "max-volumes": "7",
		"state-truncate-at-corruption": "true", "cluster": "on", "kubeconfig": "/etc/env/kubeconfig", "leader-election": "true",
		"leader-election-namespace": "env-ns", "leader-election-identity": "env-pod",
		"leader-election-lease-duration": "20s", "leader-election-renew-deadline": "12s", "leader-election-retry-period": "3s",
		"reconcile-grace": "2m", "reconcile-interval": "10s",
	}
	// The flags of cluster mode, which excludes --state-file,
	// --known-nodes and --state-truncate-at-corruption.
	clusterFlags := []string{"cluster", "kubeconfig", "leader-election", "leader-election-namespace", "leader-election-identity",
		"leader-election-lease-duration", "leader-election-renew-deadline", "leader-election-retry-period",
		"reconcile-grace", "reconcile-interval"}
	var all []string
	newFlagSet(&config{}).VisitAll(func(f *flag.Flag) { all = append(all, f.Name) })
	// Mutually exclusive flags go in separate rounds.
	rounds := [][]string{nil, {"rds-host-key", "rds-address", "rds-key-file"},
		append([]string{"mode", "simulate", "node-id"}, clusterFlags...)}
	for _, name := range all {
		if exceptions[name] {
			continue
		}
		if _, ok := samples[name]; !ok {
			t.Errorf("--%s has no sample value in this test", name)
			continue
		}
		if name != "rds-host-key" && !slices.Contains(clusterFlags, name) {
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

// noServiceAccount points serviceAccountNamespaceFile at a missing file
// for t, as outside a pod.
func noServiceAccount(t *testing.T) {
	t.Helper()
	saved := serviceAccountNamespaceFile
	serviceAccountNamespaceFile = filepath.Join(t.TempDir(), "absent")
	t.Cleanup(func() { serviceAccountNamespaceFile = saved })
}

// --cluster auto is on in a pod or with --kubeconfig, off otherwise, and
// only for the controller; each cluster flag parses, from the command
// line or its environment variable.
func TestParseConfigCluster(t *testing.T) {
	noServiceAccount(t)
	const pod = envInPod
	host, _ := os.Hostname()
	cases := []struct {
		name string
		args []string
		env  []string
		on   bool
	}{
		{"default outside a pod", []string{"--simulate"}, nil, false},
		{"auto in a pod", []string{"--simulate", "--mode", "controller"}, []string{pod, "10.96.0.1"}, true},
		{"auto with kubeconfig", []string{"--simulate", "--kubeconfig", "/etc/kube/config"}, nil, true},
		{"auto with kubeconfig from env", []string{"--simulate"}, []string{"RDS_CSI_KUBECONFIG", "/etc/kube/config"}, true},
		{"on outside a pod with kubeconfig", []string{"--simulate", "--cluster", "on", "--kubeconfig", "/k"}, nil, true},
		{"off in a pod keeps the state file", []string{"--simulate", "--cluster", "off", "--state-file", "/s", "--known-nodes", "a"}, []string{pod, "10.96.0.1"}, false},
		{"off from env", []string{"--simulate"}, []string{pod, "10.96.0.1", "RDS_CSI_CLUSTER", "off"}, false},
		// The node reads nothing from the cluster, whatever the flags.
		{"node in a pod", []string{"--mode", "node", "--node-id", "n"}, []string{pod, "10.96.0.1"}, false},
		{"node with cluster flags", []string{"--mode", "node", "--node-id", "n", "--cluster", "on", "--leader-election"}, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.args, envOf(tc.env...))
			if err != nil {
				t.Fatal(err)
			}
			if c.clusterOn != tc.on {
				t.Fatalf("cluster on = %v, want %v", c.clusterOn, tc.on)
			}
		})
	}

	c, err := parseConfig([]string{"--simulate", "--kubeconfig", "/k"}, envOf())
	if err != nil {
		t.Fatal(err)
	}
	if c.cluster != clusterAuto || c.leaderElection || c.leLeaseDuration != 15*time.Second || c.leRenewDeadline != 10*time.Second ||
		c.leRetryPeriod != 5*time.Second || c.reconcileGrace != 5*time.Minute || c.reconcileInterval != 30*time.Second {
		t.Errorf("cluster defaults: %+v", c)
	}

	c, err = parseConfig([]string{"--simulate", "--mode", "controller", "--leader-election",
		"--leader-election-lease-duration", "4s", "--leader-election-renew-deadline", "3s", "--leader-election-retry-period", "1s",
		"--reconcile-grace", "0s", "--reconcile-interval", "1s"},
		envOf(pod, "10.96.0.1", "RDS_CSI_LEADER_ELECTION_NAMESPACE", "csi"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.clusterOn || !c.leaderElection || c.leNamespace != "csi" || c.src("leader-election-namespace") != "RDS_CSI_LEADER_ELECTION_NAMESPACE" ||
		c.leLeaseDuration != 4*time.Second || c.leRenewDeadline != 3*time.Second || c.leRetryPeriod != time.Second ||
		c.reconcileGrace != 0 || c.reconcileInterval != time.Second {
		t.Errorf("parsed %+v", c)
	}
	if c.leIdentity != host {
		t.Errorf("identity %q, want the host name %q", c.leIdentity, host)
	}
	if got := c.leaseName(); got != "rds-csi-srvlab-io-controller" {
		t.Errorf("lease name %q", got)
	}

	// In a pod the namespace is the pod's.
	ns := filepath.Join(t.TempDir(), "namespace")
	if err := os.WriteFile(ns, []byte("storage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	serviceAccountNamespaceFile = ns
	c, err = parseConfig([]string{"--simulate", "--mode", "controller", "--driver-name", "block.example.com"},
		envOf(pod, "10.96.0.1", "RDS_CSI_LEADER_ELECTION", "true", "RDS_CSI_LEADER_ELECTION_IDENTITY", "ctrl-0"))
	if err != nil {
		t.Fatal(err)
	}
	if c.leNamespace != "storage" || c.leIdentity != "ctrl-0" || c.leaseName() != "block-example-com-controller" {
		t.Errorf("namespace %q identity %q lease %q", c.leNamespace, c.leIdentity, c.leaseName())
	}
}

// Each invalid combination of the cluster flags is an error that names
// the flag (as typed: flag or environment variable) and the way out.
func TestParseConfigClusterErrors(t *testing.T) {
	noServiceAccount(t)
	inPod := []string{envInPod, "10.96.0.1"}
	ctrl := []string{"--simulate", "--mode", "controller"}
	with := func(extra ...string) []string { return append(slices.Clone(ctrl), extra...) }
	le := func(extra ...string) []string {
		return with(append([]string{"--kubeconfig", "/k", "--leader-election", "--leader-election-namespace", "kube-system"}, extra...)...)
	}
	cases := []configErrorCase{
		{"bogus", with("--cluster", "bogus"), nil, `--cluster: must be auto, on or off, got "bogus"`},
		{"bogus from env", ctrl, []string{"RDS_CSI_CLUSTER", "yes"}, `RDS_CSI_CLUSTER: must be auto, on or off, got "yes"`},
		{"bogus in node mode", []string{"--mode", "node", "--node-id", "n", "--cluster", "maybe"}, nil, `--cluster: must be auto, on or off`},
		{"on with state file", with("--cluster", "on", "--kubeconfig", "/k", "--state-file", "/s"), nil,
			"--state-file cannot be used with the cluster as the attachment truth (--cluster is on): the attachments are the cluster's VolumeAttachments; remove it, or set --cluster off"},
		{"pod with state file", with("--state-file", "/s"), inPod,
			"--state-file cannot be used with the cluster as the attachment truth (--cluster is auto, on in a pod (KUBERNETES_SERVICE_HOST is set))"},
		{"pod with state file from env", ctrl, append([]string{"RDS_CSI_STATE_FILE", "/s"}, inPod...), "RDS_CSI_STATE_FILE cannot be used with the cluster"},
		{"kubeconfig with known nodes", with("--kubeconfig", "/k", "--known-nodes", "a,b"), nil,
			"--known-nodes cannot be used with the cluster as the attachment truth (--cluster is auto, on since --kubeconfig is set): nodes are looked up in the cluster's Nodes"},
		{"on with truncate", with("--cluster", "on", "--state-truncate-at-corruption"), inPod, "--state-truncate-at-corruption cannot be used with the cluster"},
		{"on outside a pod", with("--cluster", "on"), nil, "--cluster is on, but this is not a pod (KUBERNETES_SERVICE_HOST is unset): give --kubeconfig"},
		{"on from env outside a pod", ctrl, []string{"RDS_CSI_CLUSTER", "on"}, "RDS_CSI_CLUSTER is on, but this is not a pod"},
		{"off with kubeconfig", with("--cluster", "off", "--kubeconfig", "/k"), nil, "--kubeconfig needs the cluster, but --cluster is off; set --cluster on"},
		{"leader election outside the cluster", with("--leader-election"), nil,
			"--leader-election needs the cluster, but --cluster is auto, off outside a pod without --kubeconfig; give --kubeconfig"},
		{"reconcile grace outside the cluster", with("--reconcile-grace", "1m"), nil, "--reconcile-grace needs the cluster"},
		{"reconcile interval off", with("--cluster", "off"), []string{"RDS_CSI_RECONCILE_INTERVAL", "1m"}, "RDS_CSI_RECONCILE_INTERVAL needs the cluster, but --cluster is off"},
		{"leader election without namespace outside a pod", with("--kubeconfig", "/k", "--leader-election"), nil,
			"--leader-election-namespace is required with --leader-election outside a pod (" + serviceAccountNamespaceFile + " is not readable)"},
		{"leader election from env without namespace", with("--kubeconfig", "/k"), []string{"RDS_CSI_LEADER_ELECTION", "true"},
			"--leader-election-namespace is required with RDS_CSI_LEADER_ELECTION outside a pod"},
		{"bad namespace", le("--leader-election-namespace", "Kube_System"), nil, `--leader-election-namespace: want a namespace name, such as kube-system, got "Kube_System"`},
		{"zero retry period", le("--leader-election-retry-period", "0s"), nil, "--leader-election-retry-period: must be positive, got 0s"},
		{"renew within the retry jitter", le("--leader-election-renew-deadline", "11s", "--leader-election-retry-period", "10s", "--leader-election-lease-duration", "20s"), nil,
			"--leader-election-renew-deadline (11s) must be longer than --leader-election-retry-period (10s) times 1.2, the retries' jitter"},
		{"renew equal to retry", le("--leader-election-renew-deadline", "5s"), nil, "--leader-election-renew-deadline (5s) must be longer than --leader-election-retry-period (5s)"},
		{"lease not longer than renew", le("--leader-election-lease-duration", "10s"), nil,
			"--leader-election-lease-duration (10s) must be longer than --leader-election-renew-deadline (10s)"},
		{"lease from env", le(), []string{"RDS_CSI_LEADER_ELECTION_LEASE_DURATION", "5s"},
			"RDS_CSI_LEADER_ELECTION_LEASE_DURATION (5s) must be longer than --leader-election-renew-deadline (10s)"},
		{"lease without unit", le("--leader-election-lease-duration", "15"), nil, `--leader-election-lease-duration: want a duration with its unit, such as 15s or 1m, got "15"`},
		{"driver name no lease name", le("--driver-name", "RDS.example.com"), nil,
			`--driver-name: the leader election Lease is named after it, and "RDS-example-com-controller" is not a Kubernetes name`},
		{"negative grace", with("--kubeconfig", "/k", "--reconcile-grace", "-1s"), nil, "--reconcile-grace: must be 0 (clear at once) or positive, got -1s"},
		{"zero interval", with("--kubeconfig", "/k"), []string{"RDS_CSI_RECONCILE_INTERVAL", "0s"}, "RDS_CSI_RECONCILE_INTERVAL: must be positive, got 0s"},
	}
	checkConfigErrors(t, cases)
}
