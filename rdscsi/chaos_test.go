package rdscsi_test

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

var ctrlChaosSeed = flag.Uint64("chaos.seed", 0, "seed of TestChaos's fault sequence; 0 picks one")

// TestChaos runs 200 volume lifecycles (create, publish, unpublish,
// delete; every fourth with a snapshot, every eighth also restored) on 8
// workers while RouterOS faults are injected: failed commands, commands
// that run but lose their answer, slow commands and dropped connections.
// Every failed RPC is retried until it succeeds, as a CO does. At the end
// nothing may be left: no disks, no files in the fake's /file listing or
// data directory, no attachments.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test skipped with -short")
	}
	seed := *ctrlChaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("fault seed %d (repeat its fault choices with -chaos.seed=%d)", seed, seed)
	e := newCtrlTestEnv(t, ctrlTestConfig{clientOpts: []rdsclient.Option{
		rdsclient.WithRetry(3, time.Millisecond),
		rdsclient.WithCommandTimeout(5 * time.Second),
	}})
	ctx := context.Background()

	stop := make(chan struct{})
	var injected atomic.Int64
	var faultsWG sync.WaitGroup
	faultsWG.Add(1)
	go func() {
		defer faultsWG.Done()
		ctrlChaosFaults(e.rds, rand.New(rand.NewPCG(seed, 1)), stop, &injected)
	}()

	const lifecycles, workers = 200, 8
	var retries atomic.Int64
	jobs := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Bool
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if failed.Load() {
					continue
				}
				if err := ctrlChaosLifecycle(ctx, e, i, &retries); err != nil {
					failed.Store(true)
					t.Errorf("lifecycle %d: %v", i, err)
				}
			}
		}()
	}
	for i := 0; i < lifecycles; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(stop)
	faultsWG.Wait()
	t.Logf("%d faults injected, %d RPCs retried", injected.Load(), retries.Load())
	if failed.Load() {
		return
	}

	// Nothing left behind.
	if s := e.diskSlots(t, "pvc-"); len(s) != 0 {
		t.Errorf("orphan volumes: %v", s)
	}
	if s := e.diskSlots(t, "snap-"); len(s) != 0 {
		t.Errorf("orphan snapshots: %v", s)
	}
	if f := e.fileNames(t, "storage-pool"); len(f) != 0 {
		t.Errorf("orphan files in /file: %v", f)
	}
	var hostFiles []string
	filepath.WalkDir(e.rds.DataDir(), func(p string, d fs.DirEntry, err error) error {
		// Dot files are the fake's own bookkeeping (its state file);
		// backing files are named pvc-... and snap-....
		if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			hostFiles = append(hostFiles, p)
		}
		return nil
	})
	if len(hostFiles) != 0 {
		t.Errorf("orphan files in the data dir: %v", hostFiles)
	}
	if c := e.manager.Counts(); c != (attach.Counts{}) {
		t.Errorf("attachments left: %+v %v", c, e.manager.List())
	}
}

// ctrlChaosLifecycle runs one volume's life, retrying each step.
func ctrlChaosLifecycle(ctx context.Context, e *ctrlTestEnv, i int, retries *atomic.Int64) error {
	vc := ctrlTestRWO
	if i%2 == 1 {
		vc = ctrlTestBlockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	}
	node := fmt.Sprintf("node-%d", i%5)
	var vol *csi.Volume
	steps := []struct {
		name string
		do   func() error
	}{
		{"create", func() error {
			r, err := e.cc.CreateVolume(ctx, ctrlTestCreateReq(fmt.Sprintf("chaos-%d", i), int64(8+i%3)*ctrlTestMiB, vc))
			vol = r.GetVolume()
			return err
		}},
		{"publish", func() error {
			_, err := e.cc.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
				VolumeId: vol.VolumeId, NodeId: node, VolumeCapability: vc, VolumeContext: vol.VolumeContext})
			return err
		}},
	}
	var snapID string
	if i%4 == 0 {
		steps = append(steps, struct {
			name string
			do   func() error
		}{"snapshot", func() error {
			r, err := e.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: fmt.Sprintf("chaos-snap-%d", i), SourceVolumeId: vol.VolumeId})
			snapID = r.GetSnapshot().GetSnapshotId()
			return err
		}})
	}
	var restored string
	if i%8 == 0 {
		steps = append(steps, struct {
			name string
			do   func() error
		}{"restore", func() error {
			req := ctrlTestCreateReq(fmt.Sprintf("chaos-restored-%d", i), 0, vc)
			req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
				Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snapID}}}
			r, err := e.cc.CreateVolume(ctx, req)
			restored = r.GetVolume().GetVolumeId()
			return err
		}}, struct {
			name string
			do   func() error
		}{"delete restored", func() error {
			_, err := e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: restored})
			return err
		}})
	}
	steps = append(steps, struct {
		name string
		do   func() error
	}{"unpublish", func() error {
		_, err := e.cc.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: vol.VolumeId, NodeId: node})
		return err
	}})
	// Half the snapshots outlive their volume.
	deleteSnap := struct {
		name string
		do   func() error
	}{"delete snapshot", func() error {
		_, err := e.cc.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snapID})
		return err
	}}
	deleteVol := struct {
		name string
		do   func() error
	}{"delete", func() error {
		_, err := e.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vol.VolumeId})
		return err
	}}
	switch {
	case i%4 != 0:
		steps = append(steps, deleteVol)
	case i%3 == 0:
		steps = append(steps, deleteSnap, deleteVol)
	default:
		steps = append(steps, deleteVol, deleteSnap)
	}

	for _, s := range steps {
		var err error
		for attempt := 0; ; attempt++ {
			if err = s.do(); err == nil {
				break
			}
			// Injected faults produce every error class (a syntax error is
			// InvalidArgument), so every error is retried; a real bug shows
			// as a step that never succeeds.
			if attempt == 300 {
				return fmt.Errorf("%s: still failing after %d attempts: %w", s.name, attempt, err)
			}
			retries.Add(1)
			time.Sleep(time.Duration(1+attempt%10) * time.Millisecond)
		}
	}
	return nil
}

// ctrlChaosFaults injects a random fault every few milliseconds and lifts
// it again a little later, until stop closes.
func ctrlChaosFaults(s *rdstest.Server, r *rand.Rand, stop <-chan struct{}, injected *atomic.Int64) {
	// Failure texts a device could print for each kind of command. A
	// print never fails with "no such item" (a miss is an empty listing),
	// and a [find]-based removal of nothing is silent, so those are not
	// injected where the device would not print them.
	outputs := map[string][]string{
		`^/disk add`:    {"failure: not enough space", "failure: item with this name already exists", "something nobody has seen before"},
		`copy-from`:     {"failure: not enough space", "something nobody has seen before"},
		`^/disk remove`: {"failure: disk is in use", "failure: no such item"},
		`^/file remove`: {"failure: file is in use", "something nobody has seen before"},
		`^/disk print`:  {"syntax error (line 1 column 7)", "something nobody has seen before"},
		`^/file print`:  {"syntax error (line 1 column 7)"},
		`^/disk set`:    {"failure: not enough space"},
	}
	var patterns []string
	for p := range outputs {
		patterns = append(patterns, p)
	}
	slices.Sort(patterns) // map order is random; the seed must replay
	var removes []func()
	defer func() {
		for _, rm := range removes {
			rm()
		}
	}()
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(2+r.IntN(8)) * time.Millisecond):
		}
		p := patterns[r.IntN(len(patterns))]
		out := outputs[p][r.IntN(len(outputs[p]))]
		switch r.IntN(4) {
		case 0:
			removes = append(removes, s.Inject(rdstest.FailNth(p, 1+r.IntN(3), out)))
		case 1:
			removes = append(removes, s.Inject(rdstest.DropAfterRun(p, 1+r.IntN(2))))
		case 2:
			removes = append(removes, s.Inject(rdstest.Latency(p, time.Duration(1+r.IntN(20))*time.Millisecond)))
		case 3:
			s.DropConnections()
		}
		injected.Add(1)
		// Lift the oldest faults so that work goes on.
		for len(removes) > 4 {
			removes[0]()
			removes = removes[1:]
		}
	}
}
