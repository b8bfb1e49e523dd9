package rdsclient_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

// TestConcurrentMixedOperations runs 64 goroutines mixing every operation
// over one Client, with a connection drop in the middle, and checks that
// the final state on the fake is exactly what the goroutines intended.
// Reads by slot and of the pool run concurrently and are coalesced
// (the default); every caller must still get its own disk.
func TestConcurrentMixedOperations(t *testing.T) {
	checkLeaks(t)
	srv := newServer(t)
	c := dial(t, srv, rdsclient.WithRetry(5, 20*time.Millisecond))
	ctx := testCtx(t)

	const workers = 64
	var wg sync.WaitGroup
	errs := make(chan error, workers*16)
	fail := func(g int, step string, err error) { errs <- fmt.Errorf("worker %d %s: %w", g, step, err) }
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slot := fmt.Sprintf("pvc-mix-%02d", g)
			s := spec(slot, int64(g+1)*mib)
			created, err := c.CreateDisk(ctx, s)
			if err != nil {
				fail(g, "create", err)
				return
			}
			// A repeated create is ErrExists, or success when the drop hit
			// it and the read-back found the identical disk.
			if d, err := c.CreateDisk(ctx, s); !errors.Is(err, rdsclient.ErrExists) && (err != nil || d.Slot != slot) {
				fail(g, "create again", fmt.Errorf("%+v, %v", d, err))
			}
			// The read answers this caller's slot, however many reads
			// one print answered.
			read, err := c.Disk(ctx, slot)
			if err != nil || !reflect.DeepEqual(read, created) {
				fail(g, "read", fmt.Errorf("%+v, want %+v: %w", read, created, err))
				return
			}
			d, err := c.ResizeDisk(ctx, read, int64(g+2)*mib)
			if err != nil || d.SizeBytes != int64(g+2)*mib {
				fail(g, "resize", fmt.Errorf("%+v: %w", d, err))
				return
			}
			if _, err := c.Disks(ctx, "pvc-mix-"); err != nil {
				fail(g, "list", err)
			}
			if _, err := c.DiskStats(ctx, slot); err != nil {
				fail(g, "stats", err)
			}
			if _, err := c.Capacity(ctx, pool); err != nil {
				fail(g, "capacity", err)
			}
			if _, err := c.Files(ctx, "storage-pool/k8s"); err != nil {
				fail(g, "files", err)
			}
			if err := c.Ping(ctx); err != nil {
				fail(g, "ping", err)
			}
			snap := rdsclient.DiskSpec{Slot: fmt.Sprintf("snap-mix-%02d", g), FilePath: fmt.Sprintf("/storage-pool/k8s/snap-mix-%02d.img", g)}
			copied, err := c.CopyDisk(ctx, d, snap)
			if err != nil || copied.SizeBytes != d.SizeBytes {
				fail(g, "copy", fmt.Errorf("%+v: %w", copied, err))
				return
			}
			// Odd workers delete their volume, even ones their snapshot,
			// each as just read.
			victim := snap.Slot
			if g%2 == 1 {
				victim = slot
			}
			if err := deleteSlot(ctx, c, victim); err != nil {
				fail(g, "delete", err)
			}
			if _, err := c.Disk(ctx, victim); !errors.Is(err, rdsclient.ErrNotFound) {
				fail(g, "read deleted", err)
			}
		}()
		if g == workers/2 {
			srv.DropConnections()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	var want []string
	for g := 0; g < workers; g++ {
		if g%2 == 1 {
			want = append(want, fmt.Sprintf("snap-mix-%02d", g))
		} else {
			want = append(want, fmt.Sprintf("pvc-mix-%02d", g))
		}
	}
	sort.Strings(want)
	var got []string
	for _, prefix := range []string{"pvc-mix-", "snap-mix-"} {
		disks, err := c.Disks(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range disks {
			got = append(got, d.Slot)
		}
	}
	sort.Strings(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("final disks:\n%v\nwant:\n%v", got, want)
	}
	// Exactly one backing file per remaining disk.
	files, err := c.Files(ctx, "storage-pool/k8s/")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Errorf("%d files for %d disks: %+v", len(files), len(want), files)
	}
}

func TestMaxSessionsBound(t *testing.T) {
	srv := newServer(t)
	queued := make(chan string, 8)
	log := slog.New(logEvents{msg: "rdsclient: waiting for a session", ch: queued})
	// Uncoalesced, so that the two reads below hold a session each;
	// coalesced, two sessions allow one print in flight (half of them),
	// and the second would wait for the first's print instead.
	c := dial(t, srv, rdsclient.WithMaxSessions(2), rdsclient.WithLogger(log), rdsclient.WithCoalescedReads(1))
	ctx := testCtx(t)
	// Two reads hang until their context ends, holding both sessions.
	// Nothing completes meanwhile, so the count below does not depend on
	// timing.
	removeHang := srv.Inject(rdstest.Hang(`^/disk print`))
	hungCtx, cancelHung := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Disk(hungCtx, "pvc-held"); !errors.Is(err, context.Canceled) {
				t.Errorf("held Disk = %v, want context.Canceled", err)
			}
		}()
	}
	waitCommands(t, srv, `^/disk print`, 2)
	removeHang()
	pings := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() { pings <- c.Ping(ctx) }()
	}
	// Every ping reports that it waits for one of the two sessions. A
	// ping that waits has not sent its command, and cannot while both
	// sessions stay held; a client without the bound never waits.
	for i := 0; i < 4; i++ {
		select {
		case <-queued:
		case <-ctx.Done():
			t.Fatalf("%d of 4 pings waited for a session; the bound of WithMaxSessions(2) is not applied", i)
		}
	}
	if n := countCommands(srv, "/system identity"); n != 0 {
		t.Errorf("%d commands beyond WithMaxSessions(2) reached the fake", n)
	}
	cancelHung()
	wg.Wait()
	for i := 0; i < 4; i++ {
		if err := <-pings; err != nil {
			t.Errorf("Ping: %v", err)
		}
	}
	if n := countCommands(srv, "/system identity"); n != 4 {
		t.Errorf("%d pings run, want 4", n)
	}
}
