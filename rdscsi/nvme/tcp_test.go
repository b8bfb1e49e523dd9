package nvme

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testNQN  = "nqn.2000-02.com.mikrotik:pvc-0b7e4a52-6f3c-4d57-9b3f-5264732d6373"
	testNQN2 = "nqn.2000-02.com.mikrotik:pvc-1c8f5b63-7a4d-4e68-8c4a-6375843e7484"
	bootNQN  = "nqn.2014-08.org.nvmexpress:boot"
)

// fakeKernel is a sysfs and /dev tree in a temp dir that changes the way
// the kernel would when nvme-cli connects or disconnects. It is also the
// Runner, and records every command.
type fakeKernel struct {
	t         *testing.T
	sys, dev  string
	multipath bool

	mu         sync.Mutex
	calls      []string
	nextCtrl   int
	nextSub    int
	subsys     map[string]int   // nqn -> subsystem instance
	ctrls      map[string][]int // nqn -> controller numbers
	noDevNode  bool             // connect creates sysfs entries but no /dev node
	devDelay   time.Duration    // /dev node appears after this delay
	keepAfter  bool             // disconnect leaves everything in place
	goneDelay  time.Duration    // disconnect removes entries after this delay
	connOut    string           // output of connect
	connErr    error            // error of connect (entries are still created unless failConn)
	disconnErr error            // error of disconnect
	failConn   bool
	timers     []*time.Timer
}

func newFakeKernel(t *testing.T, multipath bool) *fakeKernel {
	t.Helper()
	root := t.TempDir()
	k := &fakeKernel{
		t: t, sys: filepath.Join(root, "sys"), dev: filepath.Join(root, "dev"),
		multipath: multipath, subsys: map[string]int{}, ctrls: map[string][]int{},
	}
	for _, d := range []string{filepath.Join(k.sys, "class", "nvme"), filepath.Join(k.sys, "class", "nvme-subsystem"), k.dev} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		for _, tm := range k.timers {
			tm.Stop()
		}
	})
	return k
}

// connector returns a TCPConnector on the fake; opts come last and may
// override the poll interval.
func (k *fakeKernel) connector(opts ...Option) *TCPConnector {
	opts = append([]Option{WithSysfsRoot(k.sys), WithDevRoot(k.dev), WithRunner(k.run), withPollInterval(5 * time.Millisecond)}, opts...)
	return NewTCPConnector(opts...)
}

func (k *fakeKernel) write(p, content string) {
	k.t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		k.t.Error(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		k.t.Error(err)
	}
}

func (k *fakeKernel) mkdir(p string) {
	if err := os.MkdirAll(p, 0o755); err != nil {
		k.t.Error(err)
	}
}

// attach adds a controller for nqn the way the kernel does; the caller
// holds k.mu.
func (k *fakeKernel) attach(nqn, state string) {
	sub, ok := k.subsys[nqn]
	if !ok {
		sub = k.nextSub
		k.nextSub++
		k.subsys[nqn] = sub
	}
	c := k.nextCtrl
	k.nextCtrl++
	k.ctrls[nqn] = append(k.ctrls[nqn], c)

	subDir := filepath.Join(k.sys, "class", "nvme-subsystem", fmt.Sprintf("nvme-subsys%d", sub))
	ctrlDir := filepath.Join(k.sys, "class", "nvme", fmt.Sprintf("nvme%d", c))
	k.write(filepath.Join(subDir, "subsysnqn"), nqn+"\n")
	k.mkdir(filepath.Join(subDir, fmt.Sprintf("nvme%d", c)))
	k.write(filepath.Join(ctrlDir, "subsysnqn"), nqn+"\n")
	k.write(filepath.Join(ctrlDir, "state"), state+"\n")

	var devName string
	if k.multipath {
		// Visible head in the subsystem, hidden path below the controller.
		devName = fmt.Sprintf("nvme%dn1", sub)
		k.mkdir(filepath.Join(subDir, devName))
		k.mkdir(filepath.Join(ctrlDir, fmt.Sprintf("nvme%dc%dn1", sub, c)))
	} else {
		devName = fmt.Sprintf("nvme%dn1", c)
		k.mkdir(filepath.Join(ctrlDir, devName))
	}
	if k.noDevNode {
		return
	}
	mk := func() { k.write(filepath.Join(k.dev, devName), "") }
	if k.devDelay > 0 {
		k.timers = append(k.timers, time.AfterFunc(k.devDelay, mk))
	} else {
		mk()
	}
}

// detach removes every controller of nqn, its namespaces and subsystem.
func (k *fakeKernel) detach(nqn string) {
	sub, ok := k.subsys[nqn]
	if !ok {
		return
	}
	for _, c := range k.ctrls[nqn] {
		_ = os.RemoveAll(filepath.Join(k.sys, "class", "nvme", fmt.Sprintf("nvme%d", c)))
		_ = os.Remove(filepath.Join(k.dev, fmt.Sprintf("nvme%dn1", c)))
	}
	_ = os.RemoveAll(filepath.Join(k.sys, "class", "nvme-subsystem", fmt.Sprintf("nvme-subsys%d", sub)))
	_ = os.Remove(filepath.Join(k.dev, fmt.Sprintf("nvme%dn1", sub)))
	delete(k.ctrls, nqn)
	delete(k.subsys, nqn)
}

func (k *fakeKernel) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, name+" "+strings.Join(args, " "))
	if name != "nvme" || len(args) == 0 {
		return nil, fmt.Errorf("unexpected command %s", name)
	}
	flag := func(f string) string {
		i := slices.Index(args, f)
		if i < 0 || i+1 >= len(args) {
			return ""
		}
		return args[i+1]
	}
	switch args[0] {
	case "connect":
		if !k.failConn {
			k.attach(flag("--nqn"), "live")
		}
		return []byte(k.connOut), k.connErr
	case "disconnect":
		nqn := flag("--nqn")
		n := len(k.ctrls[nqn])
		if !k.keepAfter {
			if k.goneDelay > 0 {
				k.timers = append(k.timers, time.AfterFunc(k.goneDelay, func() {
					k.mu.Lock()
					defer k.mu.Unlock()
					k.detach(nqn)
				}))
			} else {
				k.detach(nqn)
			}
		}
		return fmt.Appendf(nil, "NQN:%s disconnected %d controller(s)\n", nqn, n), k.disconnErr
	case "ns-rescan":
		return nil, nil
	}
	return nil, fmt.Errorf("unexpected nvme %s", args[0])
}

func (k *fakeKernel) commands() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.calls)
}

func (k *fakeKernel) resetCommands() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = nil
}

func target(nqn string) Target {
	return Target{Address: "10.0.0.5", Port: 4420, NQN: nqn}
}

func TestConnectNonMultipath(t *testing.T) {
	k := newFakeKernel(t, false)
	conn := k.connector()
	ctx := context.Background()

	if _, err := conn.Device(ctx, testNQN); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Device before connect: %v, want ErrNotConnected", err)
	}
	tg := target(testNQN)
	tg.CtrlLossTmo, tg.ReconnectDelay, tg.KeepAliveTmo = -1, 2, 5
	dev, err := conn.Connect(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(k.dev, "nvme0n1"); dev != want {
		t.Fatalf("device %s, want %s", dev, want)
	}
	want := []string{"nvme connect --transport tcp --traddr 10.0.0.5 --trsvcid 4420 --nqn " + testNQN +
		" --ctrl-loss-tmo -1 --reconnect-delay 2 --keep-alive-tmo 5"}
	if got := k.commands(); !slices.Equal(got, want) {
		t.Fatalf("commands %q, want %q", got, want)
	}
	got, err := conn.Device(ctx, testNQN)
	if err != nil || got != dev {
		t.Fatalf("Device = %q, %v; want %q", got, err, dev)
	}
}

func TestConnectMultipathUsesVisibleHead(t *testing.T) {
	k := newFakeKernel(t, true)
	conn := k.connector()
	ctx := context.Background()
	// Another subsystem first, so the instance numbers of controller
	// and subsystem differ for ours.
	k.mu.Lock()
	k.attach(testNQN2, "live")
	k.nextCtrl = 4
	k.mu.Unlock()

	dev, err := conn.Connect(ctx, target(testNQN))
	if err != nil {
		t.Fatal(err)
	}
	// Subsystem 1, controller 4: the head is nvme1n1; the hidden path
	// nvme1c4n1 must never be returned.
	if want := filepath.Join(k.dev, "nvme1n1"); dev != want {
		t.Fatalf("device %s, want %s", dev, want)
	}
	other, err := conn.Device(ctx, testNQN2)
	if err != nil || other != filepath.Join(k.dev, "nvme0n1") {
		t.Fatalf("other subsystem device %q, %v", other, err)
	}
}

func TestConnectIdempotent(t *testing.T) {
	k := newFakeKernel(t, false)
	conn := k.connector()
	ctx := context.Background()
	first, err := conn.Connect(ctx, target(testNQN))
	if err != nil {
		t.Fatal(err)
	}
	k.resetCommands()
	second, err := conn.Connect(ctx, target(testNQN))
	if err != nil || second != first {
		t.Fatalf("second Connect = %q, %v; want %q", second, err, first)
	}
	if got := k.commands(); len(got) != 0 {
		t.Fatalf("connected subsystem was connected again: %q", got)
	}
}

func TestConnectWaitsForReconnectingController(t *testing.T) {
	k := newFakeKernel(t, false)
	conn := k.connector()
	k.mu.Lock()
	k.noDevNode = true
	k.attach(testNQN, "connecting")
	k.mu.Unlock()
	// The namespace device shows up later, as after a reconnect.
	k.mu.Lock()
	k.timers = append(k.timers, time.AfterFunc(30*time.Millisecond, func() { k.write(filepath.Join(k.dev, "nvme0n1"), "") }))
	k.mu.Unlock()

	dev, err := conn.Connect(context.Background(), target(testNQN))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(dev) != "nvme0n1" {
		t.Fatalf("device %s", dev)
	}
	if got := k.commands(); len(got) != 0 {
		t.Fatalf("a connect was issued over an existing controller: %q", got)
	}
}

func TestConnectAlreadyConnectedOutputIsSuccess(t *testing.T) {
	k := newFakeKernel(t, false)
	conn := k.connector()
	// The subsystem appears between our sysfs check and the connect:
	// nvme-cli fails with "already connected", which is success.
	k.connOut, k.connErr = "already connected\n", errors.New("exit status 1")
	dev, err := conn.Connect(context.Background(), target(testNQN))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(dev) != "nvme0n1" {
		t.Fatalf("device %s", dev)
	}
}

func TestConnectFailureIsReported(t *testing.T) {
	k := newFakeKernel(t, false)
	conn := k.connector()
	k.failConn = true
	k.connOut, k.connErr = "Failed to write to /dev/nvme-fabrics: Connection refused\n", errors.New("exit status 1")
	_, err := conn.Connect(context.Background(), target(testNQN))
	if !errors.Is(err, ErrCommand) || !strings.Contains(err.Error(), "Connection refused") {
		t.Fatalf("err = %v, want ErrCommand with output", err)
	}
}

func TestConnectDeviceAppearsLate(t *testing.T) {
	k := newFakeKernel(t, false)
	conn := k.connector()
	k.devDelay = 40 * time.Millisecond
	dev, err := conn.Connect(context.Background(), target(testNQN))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dev); err != nil {
		t.Fatalf("Connect returned before the device existed: %v", err)
	}
}

func TestConnectTimesOutWaitingForDevice(t *testing.T) {
	k := newFakeKernel(t, false)
	k.noDevNode = true
	conn := k.connector()
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := conn.Connect(ctx, target(testNQN))
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrTimeout wrapping DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Connect ignored its context for %v", d)
	}
	if got := k.commands(); len(got) != 1 {
		t.Fatalf("commands %q, want exactly one connect", got)
	}
}

func TestConnectTimeoutOption(t *testing.T) {
	k := newFakeKernel(t, false)
	k.noDevNode = true
	conn := k.connector(WithTimeouts(50*time.Millisecond, 0))
	_, err := conn.Connect(context.Background(), target(testNQN))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
}

func TestControllerNumberChangesAcrossReconnect(t *testing.T) {
	k := newFakeKernel(t, false)
	conn := k.connector()
	ctx := context.Background()
	first, err := conn.Connect(ctx, target(testNQN))
	if err != nil {
		t.Fatal(err)
	}
	// The kernel loses the controller and a reconnect creates a new one
	// with another number, without the driver being asked.
	k.mu.Lock()
	k.detach(testNQN)
	k.nextCtrl = 3
	k.attach(testNQN, "live")
	k.mu.Unlock()

	dev, err := conn.Device(ctx, testNQN)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(first) != "nvme0n1" || filepath.Base(dev) != "nvme3n1" {
		t.Fatalf("before %s after %s; want nvme0n1 then nvme3n1", first, dev)
	}
	if _, err := os.Stat(first); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old device still exists: %v", err)
	}
	// Disconnect and connect again through the connector: new number again.
	if err := conn.Disconnect(ctx, testNQN); err != nil {
		t.Fatal(err)
	}
	again, err := conn.Connect(ctx, target(testNQN))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(again) != "nvme4n1" {
		t.Fatalf("after reconnect %s, want nvme4n1", again)
	}
}

func TestDisconnectWaitsUntilGone(t *testing.T) {
	k := newFakeKernel(t, true)
	conn := k.connector()
	ctx := context.Background()
	dev, err := conn.Connect(ctx, target(testNQN))
	if err != nil {
		t.Fatal(err)
	}
	k.goneDelay = 40 * time.Millisecond
	if err := conn.Disconnect(ctx, testNQN); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dev); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Disconnect returned while %s still exists (%v)", dev, err)
	}
	if _, err := conn.Device(ctx, testNQN); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Device after disconnect: %v", err)
	}
	// Absent: success, and no command is run.
	k.resetCommands()
	if err := conn.Disconnect(ctx, testNQN); err != nil {
		t.Fatal(err)
	}
	if got := k.commands(); len(got) != 0 {
		t.Fatalf("disconnect of an absent subsystem ran %q", got)
	}
}

func TestDisconnectTimesOut(t *testing.T) {
	k := newFakeKernel(t, false)
	conn := k.connector(WithTimeouts(0, 60*time.Millisecond))
	ctx := context.Background()
	if _, err := conn.Connect(ctx, target(testNQN)); err != nil {
		t.Fatal(err)
	}
	k.keepAfter = true
	err := conn.Disconnect(ctx, testNQN)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
}

func TestDisconnectFailureIsReported(t *testing.T) {
	k := newFakeKernel(t, false)
	conn := k.connector()
	ctx := context.Background()
	if _, err := conn.Connect(ctx, target(testNQN)); err != nil {
		t.Fatal(err)
	}
	k.keepAfter = true
	k.disconnErr = errors.New("exit status 1")
	start := time.Now()
	err := conn.Disconnect(ctx, testNQN)
	if !errors.Is(err, ErrCommand) {
		t.Fatalf("err = %v, want ErrCommand", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a failed disconnect waited %v", d)
	}
}

func TestForeignNQNNeverTouched(t *testing.T) {
	k := newFakeKernel(t, false)
	conn := k.connector()
	ctx := context.Background()
	// The host boots from an NVMe-oF volume.
	k.mu.Lock()
	k.attach(bootNQN, "live")
	k.mu.Unlock()

	if err := conn.Disconnect(ctx, bootNQN); !errors.Is(err, ErrForeign) {
		t.Fatalf("Disconnect(boot) = %v, want ErrForeign", err)
	}
	if _, err := conn.Connect(ctx, target(bootNQN)); !errors.Is(err, ErrForeign) {
		t.Fatalf("Connect(boot) = %v, want ErrForeign", err)
	}
	if _, err := conn.Device(ctx, bootNQN); !errors.Is(err, ErrForeign) {
		t.Fatalf("Device(boot) = %v, want ErrForeign", err)
	}
	if err := conn.Rescan(ctx, bootNQN); !errors.Is(err, ErrForeign) {
		t.Fatalf("Rescan(boot) = %v, want ErrForeign", err)
	}
	// A prefix that only looks alike is foreign too.
	if err := conn.Disconnect(ctx, "nqn.2000-02.com.mikrotik:boot-disk"); !errors.Is(err, ErrForeign) {
		t.Fatalf("Disconnect(lookalike) = %v, want ErrForeign", err)
	}
	if got := k.commands(); len(got) != 0 {
		t.Fatalf("commands ran for a foreign NQN: %q", got)
	}
	if _, err := os.Stat(filepath.Join(k.dev, "nvme0n1")); err != nil {
		t.Fatalf("boot volume gone: %v", err)
	}
}

func TestCustomPrefix(t *testing.T) {
	k := newFakeKernel(t, false)
	conn := k.connector(WithNQNPrefix("nqn.2024-01.io.example:vol-"))
	ctx := context.Background()
	if _, err := conn.Connect(ctx, target(testNQN)); !errors.Is(err, ErrForeign) {
		t.Fatalf("default-prefix NQN under a custom prefix: %v", err)
	}
	if _, err := conn.Connect(ctx, target("nqn.2024-01.io.example:vol-1")); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidTargetRunsNothing(t *testing.T) {
	k := newFakeKernel(t, false)
	conn := k.connector()
	ctx := context.Background()
	bad := []Target{
		{Address: "-oProxyCommand", Port: 4420, NQN: testNQN},
		{Address: "10.0.0.5", Port: 0, NQN: testNQN},
		{Address: "10.0.0.5", Port: 70000, NQN: testNQN},
		{Address: "10.0.0.5", Port: 4420, NQN: testNQN + " --hostnqn x"},
		{Address: "10.0.0.5", Port: 4420, NQN: "--nqn"},
		{Address: "10.0.0.5", Port: 4420, NQN: testNQN, CtrlLossTmo: -2},
	}
	for _, tg := range bad {
		if _, err := conn.Connect(ctx, tg); !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrForeign) {
			t.Errorf("Connect(%+v) = %v, want ErrInvalid", tg, err)
		}
	}
	if got := k.commands(); len(got) != 0 {
		t.Fatalf("commands ran for invalid targets: %q", got)
	}
}

func TestRescan(t *testing.T) {
	k := newFakeKernel(t, true)
	conn := k.connector()
	ctx := context.Background()
	if err := conn.Rescan(ctx, testNQN); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Rescan before connect: %v", err)
	}
	if _, err := conn.Connect(ctx, target(testNQN)); err != nil {
		t.Fatal(err)
	}
	k.resetCommands()
	if err := conn.Rescan(ctx, testNQN); err != nil {
		t.Fatal(err)
	}
	want := []string{"nvme ns-rescan " + filepath.Join(k.dev, "nvme0")}
	if got := k.commands(); !slices.Equal(got, want) {
		t.Fatalf("commands %q, want %q", got, want)
	}
}

func TestNoNVMeModules(t *testing.T) {
	// No /sys/class/nvme at all: nothing is connected, not an error.
	conn := NewTCPConnector(WithSysfsRoot(t.TempDir()), WithDevRoot(t.TempDir()), WithRunner(func(context.Context, string, ...string) ([]byte, error) {
		return nil, errors.New("must not run")
	}))
	if _, err := conn.Device(context.Background(), testNQN); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("err = %v, want ErrNotConnected", err)
	}
	if err := conn.Disconnect(context.Background(), testNQN); err != nil {
		t.Fatal(err)
	}
}
