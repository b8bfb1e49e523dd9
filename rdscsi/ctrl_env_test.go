package rdscsi_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/metrics"
	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
	"github.com/srvlab/rds-csi/rdscsi"
)

// Shared settings of the controller tests.
const (
	ctrlTestVolumePath = "/storage-pool/k8s"
	ctrlTestAddress    = "192.0.2.10"
	ctrlTestDriver     = "rds.csi.test"
)

// ctrlTestEnv is a ControllerServer backed by the real parts: an rdstest
// server, an rdsclient.Client, an attach.Manager on a FileStore, served
// over a unix socket through the interceptors.
type ctrlTestEnv struct {
	rds     *rdstest.Server
	client  *rdsclient.Client
	store   *attach.FileStore
	manager *attach.Manager
	ctrl    *rdscsi.ControllerServer
	srv     *grpc.Server
	conn    *grpc.ClientConn
	cc      csi.ControllerClient
	ic      csi.IdentityClient
	socket  string
	state   string // attachment log path
}

type ctrlTestConfig struct {
	ctrlOpts   []rdscsi.ControllerOption
	rdsOpts    []rdstest.Option
	clientOpts []rdsclient.Option
	noAttach   bool
	logger     *slog.Logger
	recorder   metrics.Recorder
	// clock, if set, is the time of the attach.Manager (attach.WithClock:
	// migration starts and timeouts) and of the controller
	// (rdscsi.WithClock); a ctrlTestClock's Now, typically.
	clock func() time.Time
	// store, if set, wraps the FileStore the attach.Manager writes to (to
	// make it fail with attachtest.Wrap, for instance).
	store func(attach.Store) attach.Store
	// intercept, if set, runs first in the server's interceptor chain, so
	// it sees every call and its end after the serializer let go.
	intercept grpc.UnaryServerInterceptor
	// setup runs once the fake and the client exist, before services are
	// registered (to build a NodeServer on the fake, for instance).
	setup func(*ctrlTestEnv)
	// register adds more services (e.g. a NodeServer) to the gRPC server.
	register func(grpc.ServiceRegistrar)
	// wrap, if set, wraps the client the controller uses.
	wrap func(rdscsi.Disks) rdscsi.Disks
}

// ctrlTestShortDir returns a short temporary directory: unix socket
// paths are limited to about 100 bytes, t.TempDir paths can be longer.
func ctrlTestShortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "csi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func newCtrlTestEnv(t testing.TB, cfg ctrlTestConfig) *ctrlTestEnv {
	t.Helper()
	ctrlTestCheckLeaks(t)
	ctx := context.Background()
	e := &ctrlTestEnv{}
	var err error

	e.rds, err = rdstest.NewServer(cfg.rdsOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.rds.Close(); err != nil {
			t.Errorf("rdstest close: %v", err)
		}
	})
	copts := append([]rdsclient.Option{rdsclient.WithRetry(6, 5*time.Millisecond)}, cfg.clientOpts...)
	e.client, err = rdsclient.Dial(ctx, e.rds.Addr(), e.rds.ClientConfig(), copts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.client.Close() })

	var atts rdscsi.Attachments
	if !cfg.noAttach {
		e.state = filepath.Join(t.TempDir(), "attachments.log")
		e.store, err = attach.NewFileStore(e.state)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.store.Close() })
		var mopts []attach.Option
		if cfg.clock != nil {
			mopts = append(mopts, attach.WithClock(cfg.clock))
		}
		var store attach.Store = e.store
		if cfg.store != nil {
			store = cfg.store(store)
		}
		e.manager, err = attach.NewManager(ctx, store, mopts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.manager.Close() })
		atts = e.manager
	}

	opts := []rdscsi.ControllerOption{
		rdscsi.WithVolumePath(ctrlTestVolumePath),
		rdscsi.WithNVMeAddress(ctrlTestAddress),
	}
	if cfg.clock != nil {
		opts = append(opts, rdscsi.WithClock(cfg.clock))
	}
	opts = append(opts, cfg.ctrlOpts...)
	var disks rdscsi.Disks = e.client
	if cfg.wrap != nil {
		disks = cfg.wrap(e.client)
	}
	e.ctrl, err = rdscsi.NewControllerServer(disks, atts, opts...)
	if err != nil {
		t.Fatal(err)
	}

	logger := cfg.logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rec := cfg.recorder
	if rec == nil {
		rec = metrics.Noop{}
	}
	chain := []grpc.UnaryServerInterceptor{
		rdscsi.LoggingInterceptor(logger),
		rdscsi.MetricsInterceptor(rec),
		rdscsi.SerializeInterceptor(),
	}
	if cfg.intercept != nil {
		chain = append([]grpc.UnaryServerInterceptor{cfg.intercept}, chain...)
	}
	e.srv = grpc.NewServer(grpc.ChainUnaryInterceptor(chain...))
	if cfg.setup != nil {
		cfg.setup(e)
	}
	e.ctrl.Register(e.srv)
	ids, err := rdscsi.NewIdentityServer(ctrlTestDriver, "v0.0.1-test", rdscsi.WithController(e.ctrl))
	if err != nil {
		t.Fatal(err)
	}
	ids.Register(e.srv)
	if cfg.register != nil {
		cfg.register(e.srv)
	}
	e.socket = filepath.Join(ctrlTestShortDir(t), "csi.sock")
	l, err := rdscsi.Listen("unix://" + e.socket)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		e.srv.Serve(l)
	}()
	t.Cleanup(func() {
		e.srv.Stop()
		<-served
	})
	e.conn, err = grpc.NewClient("unix://"+e.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.conn.Close() })
	e.cc = csi.NewControllerClient(e.conn)
	e.ic = csi.NewIdentityClient(e.conn)
	return e
}

// ctrlTestClock is a clock a test moves by hand; pass its Now as
// ctrlTestConfig.clock.
type ctrlTestClock struct {
	mu  sync.Mutex
	now time.Time
}

func newCtrlTestClock() *ctrlTestClock {
	return &ctrlTestClock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *ctrlTestClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *ctrlTestClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// ctrlTestCheckLeaks fails the test if goroutines of this module, gRPC or
// SSH started during it are still running a little after its cleanups.
// Registered first, it runs last. Goroutines of other libraries (Ginkgo's
// signal handler, for one) are not counted.
func ctrlTestCheckLeaks(t testing.TB) {
	t.Helper()
	before := len(ctrlTestOurGoroutines())
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			gs := ctrlTestOurGoroutines()
			if len(gs) <= before {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("goroutine leak: %d running, %d before the test\n%s", len(gs), before, strings.Join(gs, "\n\n"))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// ctrlTestOurGoroutines returns the stacks of the goroutines that run
// code of this module, gRPC or the SSH package, except the caller's.
func ctrlTestOurGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "ctrlTestOurGoroutines") {
			continue
		}
		if strings.Contains(g, "srvlab/rds-csi") || strings.Contains(g, "google.golang.org/grpc") || strings.Contains(g, "golang.org/x/crypto/ssh") {
			out = append(out, g)
		}
	}
	return out
}

// Requests used across the tests.

func ctrlTestMountCap(mode csi.VolumeCapability_AccessMode_Mode, fs string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fs}},
	}
}

func ctrlTestBlockCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
	}
}

var ctrlTestRWO = ctrlTestMountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "ext4")

func ctrlTestCreateReq(name string, size int64, caps ...*csi.VolumeCapability) *csi.CreateVolumeRequest {
	if len(caps) == 0 {
		caps = []*csi.VolumeCapability{ctrlTestRWO}
	}
	req := &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: caps}
	if size > 0 {
		req.CapacityRange = &csi.CapacityRange{RequiredBytes: size}
	}
	return req
}

// ctrlTestDiskSlots lists the slots on the fake whose name starts with
// prefix, through a fresh read of the device.
func (e *ctrlTestEnv) diskSlots(t testing.TB, prefix string) []string {
	t.Helper()
	disks, err := e.client.Disks(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range disks {
		out = append(out, d.Slot)
	}
	return out
}

// fileNames lists the regular files under the volume directory.
func (e *ctrlTestEnv) fileNames(t testing.TB, dir string) []string {
	t.Helper()
	files, err := e.client.Files(context.Background(), dir+"/")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if f.Type != "directory" {
			out = append(out, f.Name)
		}
	}
	return out
}
