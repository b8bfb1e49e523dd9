package attach_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/attach"
)

// Environment of the helper process run by the crash tests.
const (
	helperEnv  = "ATTACH_TEST_HELPER" // "ops" or "tryopen"
	helperLog  = "ATTACH_TEST_LOG"
	helperSeed = "ATTACH_TEST_SEED"
)

// TestHelperProcess is not a test: the crash tests run the test binary
// again with helperEnv set, and this function is then the child's body.
// Without helperEnv it returns at once.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "ops":
		runCrashChild(os.Getenv(helperLog), os.Getenv(helperSeed))
	case "tryopen":
		s, err := attach.NewFileStore(os.Getenv(helperLog))
		switch {
		case errors.Is(err, attach.ErrLocked):
			fmt.Println("LOCKED")
		case err != nil:
			fmt.Println("ERROR", err)
		default:
			s.Close()
			fmt.Println("OPENED")
		}
		os.Exit(0)
	}
}

// runCrashChild attaches and detaches forever until it is killed. Each
// worker owns its volumes, and prints "B op vol node" before an operation
// and "A op vol node" once it has returned successfully (is durable).
func runCrashChild(path, seed string) {
	fail := func(err error) {
		fmt.Println("FATAL", err)
		os.Exit(3)
	}
	s, err := attach.NewFileStore(path, attach.WithCompaction(2, 4096))
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	m, err := attach.NewManager(ctx, s)
	if err != nil {
		fail(err)
	}
	loaded := m.List()
	n, _ := strconv.Atoi(seed)
	os.Stdout.WriteString("R\n")
	const workers, vols = 6, 8
	for w := range workers {
		state := map[string][]string{}
		for _, a := range loaded {
			if strings.HasPrefix(a.VolumeID, fmt.Sprintf("w%d-", w)) {
				state[a.VolumeID] = a.Nodes
			}
		}
		go func() {
			rng := rand.New(rand.NewPCG(uint64(n), uint64(w)))
			say := func(tag, op, vol, node string) { os.Stdout.WriteString(tag + " " + op + " " + vol + " " + node + "\n") }
			for {
				k := rng.IntN(vols)
				vol := fmt.Sprintf("w%d-v%d", w, k)
				mode := attach.Exclusive
				if k%2 == 1 {
					mode = attach.Migratable
				}
				nodes := state[vol]
				op, node := "attach", fmt.Sprintf("n%d", rng.IntN(4))
				switch {
				case len(nodes) == 0:
				case mode == attach.Exclusive || len(nodes) == 2 || rng.IntN(2) == 0:
					op, node = "detach", nodes[rng.IntN(len(nodes))]
				case slices.Contains(nodes, node):
					continue
				}
				say("B", op, vol, node)
				var err error
				if op == "attach" {
					err = m.Attach(ctx, attach.Request{VolumeID: vol, NodeID: node, Mode: mode})
				} else {
					err = m.Detach(ctx, vol, node)
				}
				if err != nil {
					fail(err)
				}
				say("A", op, vol, node)
				state[vol] = applyOp(nodes, op, node)
			}
		}()
	}
	select {}
}

// applyOp replays one operation on a volume's node list.
func applyOp(nodes []string, op, node string) []string {
	if op == "attach" {
		return append(slices.Clone(nodes), node)
	}
	return slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return n == node })
}

// A child process attaching and detaching on a FileStore is killed with
// SIGKILL at random moments. After each kill the store must open cleanly
// and hold exactly the acknowledged operations, plus or minus the one
// operation per volume that was in flight.
func TestFileStoreCrashRecovery(t *testing.T) {
	const minAcksPerRound = 10
	path := tempLog(t)
	verified := map[string][]string{}
	rng := rand.New(rand.NewPCG(1, 2))
	acked := 0
	for round := range 20 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), helperEnv+"=ops", helperLog+"="+path, helperSeed+"="+strconv.Itoa(round))
		out, err := cmd.StdoutPipe()
		must(t, err)
		cmd.Stderr = os.Stderr
		must(t, cmd.Start())
		// The kill comes at a random moment after the child has
		// acknowledged a few operations in this round, so every round
		// tests something however slow the machine (a fixed sleep
		// after start may end before the first fsync on a loaded CI
		// host). The wait is bounded generously instead of tightly.
		var lines []string
		working := make(chan struct{})
		exited := make(chan struct{}) // the child closed its stdout
		var readDone sync.WaitGroup
		readDone.Go(func() {
			defer close(exited)
			sc := bufio.NewScanner(out)
			acks := 0
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "A ") {
					if acks++; acks == minAcksPerRound {
						close(working)
					}
				}
				lines = append(lines, sc.Text())
			}
		})
		select {
		case <-working:
		case <-exited:
			cmd.Wait()
			t.Fatalf("round %d: child exited early; output:\n%s", round, strings.Join(lines, "\n"))
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			readDone.Wait()
			cmd.Wait()
			t.Fatalf("round %d: child acknowledged fewer than %d operations in 60s; output:\n%s",
				round, minAcksPerRound, strings.Join(lines, "\n"))
		}
		time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
		must(t, cmd.Process.Kill())
		readDone.Wait()
		cmd.Wait()

		// Replay what the child acknowledged; remember what was in flight.
		want := map[string][]string{}
		for v, ns := range verified {
			want[v] = ns
		}
		pending := map[string][2]string{}
		for _, l := range lines {
			f := strings.Fields(l)
			switch {
			case len(f) > 0 && f[0] == "FATAL":
				t.Fatalf("round %d: child failed: %s", round, l)
			case len(f) != 4:
				continue
			case f[0] == "B":
				pending[f[2]] = [2]string{f[1], f[3]}
			case f[0] == "A":
				if pending[f[2]] != [2]string{f[1], f[3]} {
					t.Fatalf("round %d: ack without matching begin: %q", round, l)
				}
				delete(pending, f[2])
				want[f[2]] = applyOp(want[f[2]], f[1], f[3])
				acked++
			}
		}

		s, err := attach.NewFileStore(path)
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		m, err := attach.NewManager(context.Background(), s)
		if err != nil {
			t.Fatalf("round %d: load: %v", round, err)
		}
		got := map[string][]string{}
		for _, a := range m.List() {
			got[a.VolumeID] = a.Nodes
		}
		for _, v := range keys(got, want) {
			if slices.Equal(got[v], want[v]) {
				continue
			}
			if p, ok := pending[v]; ok && slices.Equal(got[v], applyOp(want[v], p[0], p[1])) {
				continue
			}
			t.Fatalf("round %d: volume %s holds %v; acknowledged ops give %v (in flight: %v)", round, v, got[v], want[v], pending[v])
		}
		verified = got
		must(t, m.Close())
		must(t, s.Close())
	}
	if acked < 20*minAcksPerRound {
		t.Fatalf("only %d operations acknowledged over 20 rounds: the test did too little", acked)
	}
	t.Logf("%d acknowledged operations verified across 20 kills", acked)
}

func keys(ms ...map[string][]string) []string {
	var out []string
	for _, m := range ms {
		for k, v := range m {
			if len(v) > 0 {
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Another process cannot open a log this process holds.
func TestFileStoreLockedAcrossProcesses(t *testing.T) {
	path := tempLog(t)
	s := openFileStore(t, path)
	tryOpen := func() string {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		// No race-detector pause at exit.
		cmd.Env = append(os.Environ(), helperEnv+"=tryopen", helperLog+"="+path, "GORACE=atexit_sleep_ms=0")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	if got := tryOpen(); got != "LOCKED" {
		t.Fatalf("child opened a held log: %q", got)
	}
	must(t, s.Close())
	if got := tryOpen(); got != "OPENED" {
		t.Fatalf("child could not open a released log: %q", got)
	}
}
