package nvme

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// TCPConnector is the Connector of real hosts: NVMe/TCP through nvme-cli,
// with devices resolved by NQN through sysfs on every call. It implements
// Rescanner too. It is safe for concurrent use; it keeps no state besides
// its options.
type TCPConnector struct {
	o options
}

var (
	_ Connector = (*TCPConnector)(nil)
	_ Rescanner = (*TCPConnector)(nil)
)

type options struct {
	sysfsRoot         string
	devRoot           string
	nqnPrefix         string
	command           string
	runner            Runner
	pollInterval      time.Duration
	connectTimeout    time.Duration
	disconnectTimeout time.Duration
	logger            *slog.Logger
}

// Option configures a TCPConnector. A zero value given to an option keeps
// its default.
type Option func(*options)

// WithSysfsRoot sets where sysfs is mounted. Default "/sys".
func WithSysfsRoot(dir string) Option { return func(o *options) { o.sysfsRoot = dir } }

// WithDevRoot sets the directory of device nodes. Default "/dev".
func WithDevRoot(dir string) Option { return func(o *options) { o.devRoot = dir } }

// WithNQNPrefix limits the connector to NQNs with this prefix: it refuses
// to connect, resolve, rescan or disconnect anything else, so that a
// host's own NVMe-oF boot volume is never touched. Default
// DefaultNQNPrefix.
func WithNQNPrefix(prefix string) Option { return func(o *options) { o.nqnPrefix = prefix } }

// WithCommand sets the nvme-cli binary. Default "nvme" from PATH.
func WithCommand(path string) Option { return func(o *options) { o.command = path } }

// WithRunner replaces how commands are run. Default os/exec.
func WithRunner(r Runner) Option { return func(o *options) { o.runner = r } }

// WithTimeouts bounds how long Connect waits for a device to appear and
// Disconnect for it to go. Defaults 30s each; zero keeps a default.
func WithTimeouts(connect, disconnect time.Duration) Option {
	return func(o *options) { o.connectTimeout, o.disconnectTimeout = connect, disconnect }
}

// WithLogger sets the logger. Default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// withPollInterval sets how often sysfs is re-read while waiting. Default
// 100ms; tests shorten it.
func withPollInterval(d time.Duration) Option { return func(o *options) { o.pollInterval = d } }

// NewTCPConnector returns a TCPConnector.
func NewTCPConnector(opts ...Option) *TCPConnector {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.sysfsRoot == "" {
		o.sysfsRoot = "/sys"
	}
	if o.devRoot == "" {
		o.devRoot = "/dev"
	}
	if o.nqnPrefix == "" {
		o.nqnPrefix = DefaultNQNPrefix
	}
	if o.command == "" {
		o.command = "nvme"
	}
	if o.runner == nil {
		o.runner = execRunner
	}
	if o.pollInterval <= 0 {
		o.pollInterval = 100 * time.Millisecond
	}
	if o.connectTimeout <= 0 {
		o.connectTimeout = 30 * time.Second
	}
	if o.disconnectTimeout <= 0 {
		o.disconnectTimeout = 30 * time.Second
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	return &TCPConnector{o: o}
}

// execRunner runs commands with os/exec; it is the default Runner.
func execRunner(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	// A child that leaves a pipe open must not pin the caller.
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

var (
	nqnRe  = regexp.MustCompile(`^nqn\.[0-9]{4}-[0-9]{2}\.[A-Za-z0-9][A-Za-z0-9.:_-]{0,200}$`)
	hostRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$`)
)

// owns reports whether nqn carries the prefix c manages.
func (c *TCPConnector) owns(nqn string) bool {
	return strings.HasPrefix(nqn, c.o.nqnPrefix) && len(nqn) > len(c.o.nqnPrefix)
}

func (c *TCPConnector) checkNQN(nqn string) error {
	if !nqnRe.MatchString(nqn) {
		return fmt.Errorf("%w: malformed nqn %q", ErrInvalid, clip(nqn))
	}
	if !c.owns(nqn) {
		return fmt.Errorf("%w: %s (prefix %s)", ErrForeign, nqn, c.o.nqnPrefix)
	}
	return nil
}

func checkTarget(t Target) error {
	if net.ParseIP(t.Address) == nil && !hostRe.MatchString(t.Address) {
		return fmt.Errorf("%w: address %q", ErrInvalid, clip(t.Address))
	}
	if t.Port < 1 || t.Port > 65535 {
		return fmt.Errorf("%w: port %d", ErrInvalid, t.Port)
	}
	if t.CtrlLossTmo < -1 || t.ReconnectDelay < 0 || t.KeepAliveTmo < 0 {
		return fmt.Errorf("%w: negative timeout", ErrInvalid)
	}
	return nil
}

// device returns the device node of the first namespace whose node exists.
func (c *TCPConnector) device(s subsystem) (string, bool) {
	for _, n := range s.namespaces {
		p := filepath.Join(c.o.devRoot, n)
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	return "", false
}

// Device returns the block device of a connected NQN, read from sysfs now.
func (c *TCPConnector) Device(ctx context.Context, nqn string) (string, error) {
	if err := c.checkNQN(nqn); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	s, err := c.lookup(nqn)
	if err != nil {
		return "", err
	}
	if dev, ok := c.device(s); ok {
		return dev, nil
	}
	if s.found {
		return "", fmt.Errorf("%w: %s has no namespace device yet", ErrNotConnected, nqn)
	}
	return "", fmt.Errorf("%w: %s", ErrNotConnected, nqn)
}

// Connect connects t unless it is connected already and waits, bounded by
// ctx and the connect timeout (WithTimeouts), for its namespace device. It
// returns the device node, resolved through sysfs.
func (c *TCPConnector) Connect(ctx context.Context, t Target) (string, error) {
	if err := c.checkNQN(t.NQN); err != nil {
		return "", err
	}
	if err := checkTarget(t); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.connectTimeout)
	defer cancel()

	ran := false
	for {
		s, err := c.lookup(t.NQN)
		if err != nil {
			return "", err
		}
		if dev, ok := c.device(s); ok {
			return dev, nil
		}
		// Connect only when no controller exists at all: a live or
		// reconnecting one would make the kernel refuse a duplicate,
		// and a deleting one must be gone before a new connect.
		if !ran && len(s.controllers) == 0 {
			args := connectArgs(t)
			c.o.logger.DebugContext(ctx, "nvme connect", "nqn", t.NQN, "address", t.Address, "port", t.Port)
			out, err := c.o.runner(ctx, c.o.command, args...)
			ran = true
			if err != nil && !alreadyConnected(out) {
				if ctx.Err() != nil {
					return "", fmt.Errorf("%w: connecting %s: %w", ErrTimeout, t.NQN, ctx.Err())
				}
				return "", fmt.Errorf("%w: nvme connect %s: %v: %s", ErrCommand, t.NQN, err, clip(strings.TrimSpace(string(out))))
			}
			continue
		}
		if err := c.sleep(ctx); err != nil {
			return "", fmt.Errorf("%w: waiting for the device of %s: %w", ErrTimeout, t.NQN, err)
		}
	}
}

func connectArgs(t Target) []string {
	args := []string{"connect",
		"--transport", "tcp",
		"--traddr", t.Address,
		"--trsvcid", strconv.Itoa(t.Port),
		"--nqn", t.NQN,
	}
	if t.CtrlLossTmo != 0 {
		args = append(args, "--ctrl-loss-tmo", strconv.Itoa(t.CtrlLossTmo))
	}
	if t.ReconnectDelay != 0 {
		args = append(args, "--reconnect-delay", strconv.Itoa(t.ReconnectDelay))
	}
	if t.KeepAliveTmo != 0 {
		args = append(args, "--keep-alive-tmo", strconv.Itoa(t.KeepAliveTmo))
	}
	return args
}

// alreadyConnected recognises nvme-cli's and the kernel's answers to a
// duplicate connect ("already connected", EALREADY).
func alreadyConnected(out []byte) bool {
	s := strings.ToLower(string(out))
	return strings.Contains(s, "already connected") || strings.Contains(s, "operation already in progress")
}

// Disconnect disconnects every controller of nqn and returns once sysfs
// shows none of them, bounded by ctx and the disconnect timeout. An NQN
// without the configured prefix is refused with ErrForeign before anything
// runs; an absent subsystem is success.
func (c *TCPConnector) Disconnect(ctx context.Context, nqn string) error {
	if err := c.checkNQN(nqn); err != nil {
		return err
	}
	s, err := c.lookup(nqn)
	if err != nil {
		return err
	}
	if !s.found {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.disconnectTimeout)
	defer cancel()
	c.o.logger.DebugContext(ctx, "nvme disconnect", "nqn", nqn)
	out, runErr := c.o.runner(ctx, c.o.command, "disconnect", "--nqn", nqn)
	for {
		s, err := c.lookup(nqn)
		if err != nil {
			return err
		}
		if !s.found {
			return nil
		}
		if runErr != nil {
			return fmt.Errorf("%w: nvme disconnect %s: %v: %s", ErrCommand, nqn, runErr, clip(strings.TrimSpace(string(out))))
		}
		if err := c.sleep(ctx); err != nil {
			return fmt.Errorf("%w: %s still present after disconnect: %w", ErrTimeout, nqn, err)
		}
	}
}

// Rescan asks every controller of nqn to rescan its namespaces, so that a
// grown namespace shows its new size.
func (c *TCPConnector) Rescan(ctx context.Context, nqn string) error {
	if err := c.checkNQN(nqn); err != nil {
		return err
	}
	s, err := c.lookup(nqn)
	if err != nil {
		return err
	}
	var errs []error
	n := 0
	for _, ctrl := range s.controllers {
		if ctrl.state != "live" {
			continue
		}
		n++
		out, err := c.o.runner(ctx, c.o.command, "ns-rescan", filepath.Join(c.o.devRoot, ctrl.name))
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: nvme ns-rescan %s: %v: %s", ErrCommand, ctrl.name, err, clip(strings.TrimSpace(string(out)))))
		}
	}
	if n == 0 {
		return fmt.Errorf("%w: %s has no live controller", ErrNotConnected, nqn)
	}
	if len(errs) == n {
		return errors.Join(errs...)
	}
	return nil
}

func (c *TCPConnector) sleep(ctx context.Context) error {
	t := time.NewTimer(c.o.pollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func clip(s string) string {
	const max = 256
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
