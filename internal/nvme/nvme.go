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
	"sort"
	"strconv"
	"strings"
	"time"
)

// Error classes. Every error returned by an Initiator wraps one of them.
var (
	// ErrNotConnected: no namespace device of the NQN exists on this host.
	ErrNotConnected = errors.New("nvme: subsystem not connected")
	// ErrForeign: the NQN does not carry the configured prefix; nothing
	// was done.
	ErrForeign = errors.New("nvme: nqn not managed by this driver")
	// ErrInvalid: a target field is malformed; nothing was run.
	ErrInvalid = errors.New("nvme: invalid argument")
	// ErrCommand: nvme-cli failed.
	ErrCommand = errors.New("nvme: command failed")
	// ErrTimeout: a device did not appear or disappear in time. It also
	// wraps the context error.
	ErrTimeout = errors.New("nvme: timed out")
)

// DefaultNQNPrefix is the prefix of the NQNs an Initiator manages by
// default: the MikroTik NQN namespace followed by the volume prefix.
const DefaultNQNPrefix = "nqn.2000-02.com.mikrotik:pvc-"

// Runner runs a command and returns its combined output. The error is
// non-nil when the command could not run or exited non-zero.
type Runner func(ctx context.Context, name string, args ...string) ([]byte, error)

// ExecRunner runs commands with os/exec; it is the default Runner.
func ExecRunner(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	// A child that leaves a pipe open must not pin the caller.
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

// Target is an NVMe/TCP subsystem to connect to.
type Target struct {
	Address string
	Port    int
	NQN     string
	// Seconds; zero leaves nvme-cli's default. CtrlLossTmo -1 retries
	// forever.
	CtrlLossTmo    int
	ReconnectDelay int
	KeepAliveTmo   int
}

// Options configure an Initiator. Zero fields take the defaults noted.
type Options struct {
	SysfsRoot string // "/sys"
	DevRoot   string // "/dev"
	// NQNPrefix limits every operation to NQNs starting with it.
	// Default DefaultNQNPrefix.
	NQNPrefix string
	Command   string // nvme-cli binary, "nvme"
	Runner    Runner // ExecRunner
	// PollInterval is how often sysfs is re-read while waiting. 100ms.
	PollInterval time.Duration
	// ConnectTimeout bounds how long Connect waits for the namespace
	// device. 30s.
	ConnectTimeout time.Duration
	// DisconnectTimeout bounds how long Disconnect waits for the
	// subsystem to go. 30s.
	DisconnectTimeout time.Duration
	Logger            *slog.Logger // discards by default
}

// Initiator connects, resolves and disconnects NVMe/TCP subsystems. It is
// safe for concurrent use; it keeps no state besides its options.
type Initiator struct {
	o Options
}

// New returns an Initiator with o's zero fields set to their defaults.
func New(o Options) *Initiator {
	if o.SysfsRoot == "" {
		o.SysfsRoot = "/sys"
	}
	if o.DevRoot == "" {
		o.DevRoot = "/dev"
	}
	if o.NQNPrefix == "" {
		o.NQNPrefix = DefaultNQNPrefix
	}
	if o.Command == "" {
		o.Command = "nvme"
	}
	if o.Runner == nil {
		o.Runner = ExecRunner
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 30 * time.Second
	}
	if o.DisconnectTimeout <= 0 {
		o.DisconnectTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Initiator{o: o}
}

var (
	nqnRe  = regexp.MustCompile(`^nqn\.[0-9]{4}-[0-9]{2}\.[A-Za-z0-9][A-Za-z0-9.:_-]{0,200}$`)
	hostRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$`)
	// nvme<ctrl>: a controller.
	ctrlRe = regexp.MustCompile(`^nvme[0-9]+$`)
	// nvme<X>n<ns>: a visible namespace (a multipath head or a
	// non-multipath namespace). Hidden paths nvme<X>c<Y>n<ns> never
	// match.
	nsRe = regexp.MustCompile(`^nvme[0-9]+n([0-9]+)$`)
)

// Owns reports whether nqn carries the prefix this Initiator manages.
func (in *Initiator) Owns(nqn string) bool {
	return strings.HasPrefix(nqn, in.o.NQNPrefix) && len(nqn) > len(in.o.NQNPrefix)
}

func (in *Initiator) checkNQN(nqn string) error {
	if !nqnRe.MatchString(nqn) {
		return fmt.Errorf("%w: malformed nqn %q", ErrInvalid, clip(nqn))
	}
	if !in.Owns(nqn) {
		return fmt.Errorf("%w: %s (prefix %s)", ErrForeign, nqn, in.o.NQNPrefix)
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

// subsystem is what sysfs shows for one NQN at one moment.
type subsystem struct {
	found       bool
	controllers []controller
	namespaces  []string // visible namespace block devices, best first
}

type controller struct {
	name  string // "nvme3"
	state string // "live", "connecting", "deleting", ...
}

// active reports whether a controller exists that is not going away, so
// that connecting again would only fail with "already connected".
func (s subsystem) active() bool {
	for _, c := range s.controllers {
		if !strings.HasPrefix(c.state, "deleting") && c.state != "dead" {
			return true
		}
	}
	return false
}

// lookup reads sysfs for nqn. It handles native multipath (the visible
// head nvme<subsys>n<ns> lives in the subsystem directory, per-path
// nvme<X>c<Y>n<ns> devices are hidden) and non-multipath (nvme<X>n<ns>
// below controller nvme<X>).
func (in *Initiator) lookup(nqn string) (subsystem, error) {
	var s subsystem
	ctrls := map[string]bool{}
	ns := map[string]bool{}

	subsysDir := filepath.Join(in.o.SysfsRoot, "class", "nvme-subsystem")
	subs, err := readDir(subsysDir)
	if err != nil {
		return s, err
	}
	for _, sub := range subs {
		dir := filepath.Join(subsysDir, sub)
		if readAttr(filepath.Join(dir, "subsysnqn")) != nqn {
			continue
		}
		s.found = true
		entries, err := readDir(dir)
		if err != nil {
			return s, err
		}
		for _, e := range entries {
			switch {
			case nsRe.MatchString(e):
				ns[e] = true
			case ctrlRe.MatchString(e):
				ctrls[e] = true
			}
		}
	}

	ctrlDir := filepath.Join(in.o.SysfsRoot, "class", "nvme")
	all, err := readDir(ctrlDir)
	if err != nil {
		return s, err
	}
	for _, c := range all {
		if !ctrlRe.MatchString(c) {
			continue
		}
		dir := filepath.Join(ctrlDir, c)
		if readAttr(filepath.Join(dir, "subsysnqn")) != nqn {
			continue
		}
		s.found = true
		ctrls[c] = true
		entries, err := readDir(dir)
		if err != nil {
			return s, err
		}
		for _, e := range entries {
			if nsRe.MatchString(e) {
				ns[e] = true
			}
		}
	}

	for c := range ctrls {
		state := readAttr(filepath.Join(ctrlDir, c, "state"))
		if state == "" {
			state = "live"
		}
		s.controllers = append(s.controllers, controller{name: c, state: state})
	}
	sort.Slice(s.controllers, func(i, j int) bool { return s.controllers[i].name < s.controllers[j].name })
	for n := range ns {
		s.namespaces = append(s.namespaces, n)
	}
	// Lowest namespace ID first; an RDS subsystem exports one namespace.
	sort.Slice(s.namespaces, func(i, j int) bool {
		a, b := nsid(s.namespaces[i]), nsid(s.namespaces[j])
		if a != b {
			return a < b
		}
		return s.namespaces[i] < s.namespaces[j]
	})
	return s, nil
}

func nsid(name string) int {
	m := nsRe.FindStringSubmatch(name)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// device returns the device node of the first namespace whose node exists.
func (in *Initiator) device(s subsystem) (string, bool) {
	for _, n := range s.namespaces {
		p := filepath.Join(in.o.DevRoot, n)
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	return "", false
}

// Device returns the block device of a connected NQN, read from sysfs now.
func (in *Initiator) Device(ctx context.Context, nqn string) (string, error) {
	if err := in.checkNQN(nqn); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	s, err := in.lookup(nqn)
	if err != nil {
		return "", err
	}
	if dev, ok := in.device(s); ok {
		return dev, nil
	}
	if s.found {
		return "", fmt.Errorf("%w: %s has no namespace device yet", ErrNotConnected, nqn)
	}
	return "", fmt.Errorf("%w: %s", ErrNotConnected, nqn)
}

// Connect connects t unless it is connected already and waits, bounded by
// ctx and ConnectTimeout, for its namespace device. It returns the device
// node, resolved through sysfs.
func (in *Initiator) Connect(ctx context.Context, t Target) (string, error) {
	if err := in.checkNQN(t.NQN); err != nil {
		return "", err
	}
	if err := checkTarget(t); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, in.o.ConnectTimeout)
	defer cancel()

	ran := false
	for {
		s, err := in.lookup(t.NQN)
		if err != nil {
			return "", err
		}
		if dev, ok := in.device(s); ok {
			return dev, nil
		}
		// Connect only when no controller exists at all: a live or
		// reconnecting one would make the kernel refuse a duplicate,
		// and a deleting one must be gone before a new connect.
		if !ran && len(s.controllers) == 0 {
			args := connectArgs(t)
			in.o.Logger.DebugContext(ctx, "nvme connect", "nqn", t.NQN, "address", t.Address, "port", t.Port)
			out, err := in.o.Runner(ctx, in.o.Command, args...)
			ran = true
			if err != nil && !alreadyConnected(out) {
				if ctx.Err() != nil {
					return "", fmt.Errorf("%w: connecting %s: %w", ErrTimeout, t.NQN, ctx.Err())
				}
				return "", fmt.Errorf("%w: nvme connect %s: %v: %s", ErrCommand, t.NQN, err, clip(strings.TrimSpace(string(out))))
			}
			continue
		}
		if err := in.sleep(ctx); err != nil {
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
// shows none of them, bounded by ctx and DisconnectTimeout. An NQN without
// the configured prefix is refused with ErrForeign before anything runs;
// an absent subsystem is success.
func (in *Initiator) Disconnect(ctx context.Context, nqn string) error {
	if err := in.checkNQN(nqn); err != nil {
		return err
	}
	s, err := in.lookup(nqn)
	if err != nil {
		return err
	}
	if !s.found {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, in.o.DisconnectTimeout)
	defer cancel()
	in.o.Logger.DebugContext(ctx, "nvme disconnect", "nqn", nqn)
	out, runErr := in.o.Runner(ctx, in.o.Command, "disconnect", "--nqn", nqn)
	for {
		s, err := in.lookup(nqn)
		if err != nil {
			return err
		}
		if !s.found {
			return nil
		}
		if runErr != nil {
			return fmt.Errorf("%w: nvme disconnect %s: %v: %s", ErrCommand, nqn, runErr, clip(strings.TrimSpace(string(out))))
		}
		if err := in.sleep(ctx); err != nil {
			return fmt.Errorf("%w: %s still present after disconnect: %w", ErrTimeout, nqn, err)
		}
	}
}

// Rescan asks every controller of nqn to rescan its namespaces, so that a
// grown namespace shows its new size.
func (in *Initiator) Rescan(ctx context.Context, nqn string) error {
	if err := in.checkNQN(nqn); err != nil {
		return err
	}
	s, err := in.lookup(nqn)
	if err != nil {
		return err
	}
	var errs []error
	n := 0
	for _, c := range s.controllers {
		if c.state != "live" {
			continue
		}
		n++
		out, err := in.o.Runner(ctx, in.o.Command, "ns-rescan", filepath.Join(in.o.DevRoot, c.name))
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: nvme ns-rescan %s: %v: %s", ErrCommand, c.name, err, clip(strings.TrimSpace(string(out)))))
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

func (in *Initiator) sleep(ctx context.Context) error {
	t := time.NewTimer(in.o.PollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// readDir lists the names in dir; a missing directory (nvme modules not
// loaded) is empty.
func readDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nvme: reading %s: %w", dir, err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

// readAttr returns a sysfs attribute without surrounding space, "" when it
// cannot be read (entries vanish while a controller is torn down).
func readAttr(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func clip(s string) string {
	const max = 256
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
