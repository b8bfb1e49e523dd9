package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/srvlab/rds-csi/rdsclient/rdstest"
	"github.com/srvlab/rds-csi/rdscsi"
	"github.com/srvlab/rds-csi/rdscsi/nvme"
	"github.com/srvlab/rds-csi/rdscsi/rdscsitest"
)

// envSimulateLatency is a simulation knob, read only with --simulate: every
// "/disk add" on the fake RDS waits this long (a Go duration), which makes
// CreateVolume slow enough to observe graceful shutdown. It is not a flag
// because it means nothing against a real RDS.
const envSimulateLatency = "RDS_CSI_SIMULATE_LATENCY"

// simulation is the in-process fake RDS of --simulate and the directory
// holding its data, the attachment state and the node's stage records.
type simulation struct {
	srv     *rdstest.Server
	loop    *rdscsitest.LoopConnector // nil until the node asks for it
	dir     string
	tempDir bool // dir was created here and is removed on close
}

// startSimulation starts the fake RDS on loopback. Its layout under
// --simulate-dir (or a temporary directory):
//
//	rds/               data of the fake RDS (disk files)
//	attachments.log    attachment state, unless --state-file is given
//	node/              stage records, unless --node-state-dir is given
func startSimulation(c *config, getenv func(string) string, logger *slog.Logger) (*simulation, error) {
	var latency time.Duration
	if v := getenv(envSimulateLatency); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("%s: not a non-negative duration: %q", envSimulateLatency, v)
		}
		latency = d
	}

	s := &simulation{dir: c.simulateDir}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "rds-csi-simulate-")
		if err != nil {
			return nil, fmt.Errorf("simulate: %w", err)
		}
		s.dir, s.tempDir = d, true
	}
	dataDir := filepath.Join(s.dir, "rds")
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		s.removeTemp()
		return nil, fmt.Errorf("%s: %w", c.src("simulate-dir"), err)
	}
	if c.source["state-file"] == "" {
		c.stateFile = filepath.Join(s.dir, "attachments.log")
	}
	if c.source["node-state-dir"] == "" {
		c.nodeStateDir = filepath.Join(s.dir, "node")
	}

	srv, err := rdstest.NewServer(
		rdstest.WithDataDir(dataDir),
		rdstest.WithLogger(logger.With("component", "rdstest")),
	)
	if err != nil {
		s.removeTemp()
		return nil, fmt.Errorf("simulate: %w", err)
	}
	s.srv = srv
	if latency > 0 {
		srv.Inject(rdstest.Latency(`^/disk[ /]add\b`, latency))
		logger.Info("simulate: /disk add latency injected", "latency", latency)
	}
	return s, nil
}

// connector attaches simulated volumes as loop devices over the fake's
// backing files. It needs root and loop devices; without them staging
// fails with an error that says so, while controller RPCs keep working,
// and a warning says so at startup.
func (s *simulation) connector(logger *slog.Logger) nvme.Connector {
	s.loop = rdscsitest.NewLoopConnector(s.srv)
	warnNoLoop(loopPrerequisites, logger)
	return &checkedConnector{loop: s.loop, check: loopPrerequisites}
}

// warnNoLoop logs, when check fails, that this machine cannot stage: a
// quick try without root should learn it before the first
// NodeStageVolume fails.
func warnNoLoop(check func() error, logger *slog.Logger) {
	if err := check(); err != nil {
		logger.Warn("simulate: NodeStageVolume will fail on this machine (controller calls work); run as root to stage volumes", "reason", err)
	}
}

// close detaches the loop devices of the simulation (nothing of it may
// outlive the process) and stops the fake RDS.
func (s *simulation) close() error {
	var err error
	if s.loop != nil {
		if cerr := s.loop.Close(); cerr != nil {
			err = fmt.Errorf("simulate: %w", cerr)
		}
	}
	if s.srv != nil {
		if cerr := s.srv.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("simulate: %w", cerr)
		}
	}
	s.removeTemp()
	return err
}

func (s *simulation) removeTemp() {
	if s.tempDir {
		os.RemoveAll(s.dir)
	}
}

// errNoLoop is the node error of --simulate on a machine that cannot
// create loop devices.
var errNoLoop = errors.New("simulate: node staging attaches volumes as loop devices, which needs root and /dev/loop-control")

// loopPrerequisites reports why loop devices cannot be used here, if so.
func loopPrerequisites() error {
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("%w: running as uid %d: %w", errNoLoop, uid, rdscsi.ErrFailedPrecondition)
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return fmt.Errorf("%w: %w: %w", errNoLoop, err, rdscsi.ErrFailedPrecondition)
	}
	return nil
}

// checkedConnector fails Connect early, with a clear reason, when the
// machine cannot create loop devices. It keeps the LoopConnector's
// Rescanner so that volume expansion still works.
type checkedConnector struct {
	loop  *rdscsitest.LoopConnector
	check func() error
}

var (
	_ nvme.Connector = (*checkedConnector)(nil)
	_ nvme.Rescanner = (*checkedConnector)(nil)
)

func (c *checkedConnector) Connect(ctx context.Context, t nvme.Target) (string, error) {
	if err := c.check(); err != nil {
		return "", err
	}
	return c.loop.Connect(ctx, t)
}

func (c *checkedConnector) Device(ctx context.Context, nqn string) (string, error) {
	return c.loop.Device(ctx, nqn)
}

func (c *checkedConnector) Disconnect(ctx context.Context, nqn string) error {
	return c.loop.Disconnect(ctx, nqn)
}

func (c *checkedConnector) Rescan(ctx context.Context, nqn string) error {
	return c.loop.Rescan(ctx, nqn)
}
