package rdscsi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/srvlab/rds-csi/internal/nvme"
)

// CommandRunner runs a command and returns its combined output; the error
// is non-nil when it could not run or exited non-zero. It lets tests and
// embedders replace how nvme-cli is executed.
type CommandRunner func(ctx context.Context, name string, args ...string) ([]byte, error)

// NVMeOption configures an NVMeConnector.
type NVMeOption func(*nvme.Options)

// WithNVMeSysfsRoot sets where sysfs is mounted. Default "/sys".
func WithNVMeSysfsRoot(dir string) NVMeOption { return func(o *nvme.Options) { o.SysfsRoot = dir } }

// WithNVMeDevRoot sets the directory of device nodes. Default "/dev".
func WithNVMeDevRoot(dir string) NVMeOption { return func(o *nvme.Options) { o.DevRoot = dir } }

// WithNVMeNQNPrefix limits the connector to NQNs with this prefix: it
// refuses to connect, resolve or disconnect anything else. Default
// NQNPrefix + "pvc-".
func WithNVMeNQNPrefix(prefix string) NVMeOption {
	return func(o *nvme.Options) { o.NQNPrefix = prefix }
}

// WithNVMeCommand sets the nvme-cli binary. Default "nvme" from PATH.
func WithNVMeCommand(path string) NVMeOption { return func(o *nvme.Options) { o.Command = path } }

// WithNVMeRunner replaces how commands are run. Default os/exec.
func WithNVMeRunner(r CommandRunner) NVMeOption {
	return func(o *nvme.Options) { o.Runner = nvme.Runner(r) }
}

// WithNVMeTimeouts bounds how long Connect waits for a device to appear
// and Disconnect for it to go. Defaults 30s each.
func WithNVMeTimeouts(connect, disconnect time.Duration) NVMeOption {
	return func(o *nvme.Options) { o.ConnectTimeout, o.DisconnectTimeout = connect, disconnect }
}

// WithNVMeLogger sets the logger. Default discards.
func WithNVMeLogger(l *slog.Logger) NVMeOption { return func(o *nvme.Options) { o.Logger = l } }

// NVMeConnector is the Connector of real nodes: NVMe/TCP through nvme-cli,
// with devices resolved by NQN through sysfs on every call. It also
// implements Rescanner.
type NVMeConnector struct {
	in *nvme.Initiator
}

var (
	_ Connector = (*NVMeConnector)(nil)
	_ Rescanner = (*NVMeConnector)(nil)
)

// NewNVMeConnector returns an NVMeConnector.
func NewNVMeConnector(opts ...NVMeOption) *NVMeConnector {
	o := nvme.Options{NQNPrefix: NQNPrefix + volumePrefix}
	for _, opt := range opts {
		opt(&o)
	}
	return &NVMeConnector{in: nvme.New(o)}
}

// Connect connects t if needed and returns its block device.
func (c *NVMeConnector) Connect(ctx context.Context, t Target) (string, error) {
	dev, err := c.in.Connect(ctx, nvme.Target{
		Address: t.Address, Port: t.Port, NQN: t.NQN,
		CtrlLossTmo: t.CtrlLossTmo, ReconnectDelay: t.ReconnectDelay, KeepAliveTmo: t.KeepAliveTmo,
	})
	return dev, nvmeError(err)
}

// Device returns the block device of a connected NQN.
func (c *NVMeConnector) Device(ctx context.Context, nqn string) (string, error) {
	dev, err := c.in.Device(ctx, nqn)
	return dev, nvmeError(err)
}

// Disconnect disconnects nqn and returns once its device is gone.
func (c *NVMeConnector) Disconnect(ctx context.Context, nqn string) error {
	return nvmeError(c.in.Disconnect(ctx, nqn))
}

// Rescan makes the controllers of nqn rescan their namespaces.
func (c *NVMeConnector) Rescan(ctx context.Context, nqn string) error {
	return nvmeError(c.in.Rescan(ctx, nqn))
}

// nvmeError adds this package's error class to an nvme error.
func nvmeError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nvme.ErrNotConnected):
		return fmt.Errorf("%w: %w", ErrNotConnected, err)
	case errors.Is(err, nvme.ErrInvalid), errors.Is(err, nvme.ErrForeign):
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	case errors.Is(err, nvme.ErrTimeout):
		return fmt.Errorf("%w: %w", ErrDeviceNotReady, err)
	}
	return err
}
