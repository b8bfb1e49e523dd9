package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/srvlab/rds-csi/rdscsi"
)

// errHelp is returned by parseConfig for --help: run prints the usage and
// exits 0.
var errHelp = errors.New("help requested")

// Plugin modes.
const (
	modeController = "controller"
	modeNode       = "node"
	modeAll        = "all"
)

// config is everything the flags and their RDS_CSI_* fallbacks set.
type config struct {
	endpoint       string
	mode           string
	nodeID         string
	driverName     string
	rdsAddress     string
	rdsUser        string
	rdsKeyFile     string
	rdsKnownHosts  string
	rdsHostKey     string
	rdsDialTimeout time.Duration
	volumePath     string
	stateFile      string
	nodeStateDir   string
	metricsAddress string
	logFormat      string
	logLevel       string
	knownNodes     string
	nvmeAddress    string
	simulate       bool
	simulateDir    string
	maxVolumes     int
	stateTruncate  bool
	version        bool

	// source names where each flag's value came from ("--mode" or
	// "RDS_CSI_MODE") so errors point at what the operator typed.
	source map[string]string
}

// Defaults that are not plain literals in the flag table.
const (
	defaultEndpoint     = "unix:///csi/csi.sock"
	defaultStateFile    = "/var/lib/rds-csi/attachments.json"
	defaultNodeStateDir = "/var/lib/rds-csi/node"
	defaultVolumePath   = "/storage-pool/k8s"
	defaultRDSPort      = "22"
)

// envPrefix prefixes the environment fallback of every flag.
const envPrefix = "RDS_CSI_"

// noEnv are the flags without an environment fallback: they act at once
// instead of configuring, so a variable left in a pod's environment must
// not trigger them (RDS_CSI_VERSION=true would print the version and exit
// instead of serving). --help is the flag package's own and has none
// either.
var noEnv = map[string]bool{"version": true}

// envName is the environment variable that backs a flag:
// --rds-key-file -> RDS_CSI_RDS_KEY_FILE.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// newFlagSet defines every flag on a fresh FlagSet bound to c. It is also
// what the usage text and the README flags table are checked against.
func newFlagSet(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("rds-csi-plugin", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.endpoint, "endpoint", defaultEndpoint, "CSI gRPC endpoint (unix:///path or tcp://host:port)")
	fs.StringVar(&c.mode, "mode", modeAll, "services to serve: controller, node or all")
	fs.StringVar(&c.nodeID, "node-id", "", "this node's ID (default: the host name)")
	fs.StringVar(&c.driverName, "driver-name", rdscsi.DefaultDriverName, "CSI driver name")
	fs.StringVar(&c.rdsAddress, "rds-address", "", "RDS SSH address host[:port] (port 22 if omitted); required by the controller unless --simulate")
	fs.StringVar(&c.rdsUser, "rds-user", "admin", "RouterOS user")
	fs.StringVar(&c.rdsKeyFile, "rds-key-file", "", "SSH private key file (unencrypted) of --rds-user; required by the controller unless --simulate")
	fs.StringVar(&c.rdsKnownHosts, "rds-known-hosts", "", "comma-separated OpenSSH known_hosts files that pin the RDS host key")
	fs.StringVar(&c.rdsHostKey, "rds-host-key", "", `the RDS host key as one line ("ssh-ed25519 AAAA...")`)
	fs.DurationVar(&c.rdsDialTimeout, "rds-dial-timeout", 15*time.Second, "bound on connecting to the RDS at startup")
	fs.StringVar(&c.volumePath, "volume-path", defaultVolumePath, "directory on the RDS that holds the volume files")
	fs.StringVar(&c.stateFile, "state-file", defaultStateFile, "attachment state file of the controller (default under --simulate-dir with --simulate)")
	fs.StringVar(&c.nodeStateDir, "node-state-dir", defaultNodeStateDir, "directory of the node's stage records (default under --simulate-dir with --simulate)")
	fs.StringVar(&c.metricsAddress, "metrics-address", "", "listen address of the Prometheus /metrics endpoint, e.g. :9090; empty disables it")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&c.stateTruncate, "state-truncate-at-corruption", false, "recovery only: open a --state-file damaged in the middle by keeping the records before the damage and dropping the rest, instead of refusing to start")
	fs.StringVar(&c.knownNodes, "known-nodes", "", "comma-separated node IDs the controller accepts besides --node-id")
	fs.StringVar(&c.nvmeAddress, "nvme-address", "", "NVMe/TCP address nodes connect to (default: the host of --rds-address)")
	fs.BoolVar(&c.simulate, "simulate", false, "run against an in-process fake RDS on loopback instead of a real one")
	fs.StringVar(&c.simulateDir, "simulate-dir", "", "data directory of the fake RDS (default: a temporary directory removed on exit)")
	fs.IntVar(&c.maxVolumes, "max-volumes", rdscsi.DefaultMaxVolumesPerNode, "volumes one node may have published: the node's max_volumes_per_node, enforced by the controller too; 0 for no limit")
	fs.BoolVar(&c.version, "version", false, "print the version and exit (no environment fallback)")
	return fs
}

// parseConfig reads args, then fills every flag not given on the command
// line from its RDS_CSI_* variable (except noEnv), then validates the
// result.
func parseConfig(args []string, getenv func(string) string) (*config, error) {
	c := &config{source: map[string]string{}}
	fs := newFlagSet(c)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, fmt.Errorf("%w (see --help)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) { c.source[f.Name] = "--" + f.Name })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if envErr != nil || c.source[f.Name] != "" || noEnv[f.Name] {
			return
		}
		name := envName(f.Name)
		v := getenv(name)
		if v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			envErr = fmt.Errorf("invalid value %q for %s: %w", v, name, err)
			return
		}
		c.source[f.Name] = name
	})
	if envErr != nil {
		return nil, envErr
	}
	if c.version {
		return c, nil
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// src names the origin of a flag's value for error messages.
func (c *config) src(name string) string {
	if s := c.source[name]; s != "" {
		return s
	}
	return "--" + name
}

func (c *config) validate() error {
	if !slices.Contains([]string{modeController, modeNode, modeAll}, c.mode) {
		return fmt.Errorf("%s: must be controller, node or all, got %q", c.src("mode"), c.mode)
	}
	if !slices.Contains([]string{"text", "json"}, c.logFormat) {
		return fmt.Errorf("%s: must be text or json, got %q", c.src("log-format"), c.logFormat)
	}
	if _, err := parseLevel(c.logLevel); err != nil {
		return fmt.Errorf("%s: %w", c.src("log-level"), err)
	}
	if c.endpoint == "" {
		return fmt.Errorf("%s: must not be empty", c.src("endpoint"))
	}
	if c.driverName == "" {
		return fmt.Errorf("%s: must not be empty", c.src("driver-name"))
	}
	if c.rdsDialTimeout <= 0 {
		return fmt.Errorf("%s: must be positive, got %v", c.src("rds-dial-timeout"), c.rdsDialTimeout)
	}
	if c.nodeID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return fmt.Errorf("%s is required: the host name is unknown (%v)", c.src("node-id"), err)
		}
		c.nodeID = h
	}
	if c.rdsKnownHosts != "" && c.rdsHostKey != "" {
		return fmt.Errorf("%s and %s are mutually exclusive", c.src("rds-known-hosts"), c.src("rds-host-key"))
	}
	if c.simulateDir != "" && !c.simulate {
		return fmt.Errorf("%s needs --simulate", c.src("simulate-dir"))
	}
	if c.hasController() && !c.simulate {
		switch {
		case c.rdsAddress == "":
			return fmt.Errorf("%s is required for mode %q (or use --simulate)", c.src("rds-address"), c.mode)
		case c.rdsKeyFile == "":
			return fmt.Errorf("%s is required for mode %q (or use --simulate)", c.src("rds-key-file"), c.mode)
		case c.rdsKnownHosts == "" && c.rdsHostKey == "":
			return fmt.Errorf("the RDS host key must be pinned: set --rds-known-hosts or --rds-host-key (there is no trust on first use)")
		}
		addr, err := normaliseAddress(c.rdsAddress)
		if err != nil {
			return fmt.Errorf("%s: %w", c.src("rds-address"), err)
		}
		c.rdsAddress = addr
	}
	if c.maxVolumes < 0 {
		return fmt.Errorf("%s: must be 0 (no limit) or positive, got %d", c.src("max-volumes"), c.maxVolumes)
	}
	if !strings.HasPrefix(c.volumePath, "/") {
		return fmt.Errorf("%s: must be an absolute path on the RDS, got %q", c.src("volume-path"), c.volumePath)
	}
	return nil
}

func (c *config) hasController() bool { return c.mode == modeController || c.mode == modeAll }
func (c *config) hasNode() bool       { return c.mode == modeNode || c.mode == modeAll }

// knownNodeIDs is the plugin's own node ID plus --known-nodes.
func (c *config) knownNodeIDs() map[string]bool {
	ids := map[string]bool{c.nodeID: true}
	for n := range strings.SplitSeq(c.knownNodes, ",") {
		if n = strings.TrimSpace(n); n != "" {
			ids[n] = true
		}
	}
	return ids
}

// defaultNVMeAddress is --nvme-address, or the host part of --rds-address.
func (c *config) defaultNVMeAddress() string {
	if c.nvmeAddress != "" {
		return c.nvmeAddress
	}
	host, _, err := net.SplitHostPort(c.rdsAddress)
	if err != nil {
		return c.rdsAddress
	}
	return host
}

// normaliseAddress appends the SSH port when addr has none.
func normaliseAddress(addr string) (string, error) {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr, nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	if host == "" || strings.ContainsAny(host, " /") {
		return "", fmt.Errorf("not a host[:port] address: %q", addr)
	}
	return net.JoinHostPort(host, defaultRDSPort), nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("must be debug, info, warn or error, got %q", s)
	}
	return l, nil
}

// newLogger builds the process logger from --log-format and --log-level.
func newLogger(c *config, w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.logLevel) // validated
	ho := &slog.HandlerOptions{Level: level}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// usage writes the flag reference.
func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: rds-csi-plugin [flags]\n\nA CSI plugin for MikroTik ROSE Data Server (NVMe/TCP).\n"+
		"Every flag but --version falls back to the environment variable %s<FLAG> (upper case, dashes as underscores).\n\n", envPrefix)
	var c config
	fs := newFlagSet(&c)
	fs.VisitAll(func(f *flag.Flag) {
		def := ""
		if f.DefValue != "" && f.DefValue != "false" {
			def = fmt.Sprintf(" (default %q)", f.DefValue)
		}
		env := ""
		if !noEnv[f.Name] {
			env = "  [" + envName(f.Name) + "]"
		}
		fmt.Fprintf(w, "  --%s%s\n      %s%s\n", f.Name, env, f.Usage, def)
	})
}
