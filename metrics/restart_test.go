package metrics

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/attach"
)

// TestFirstCollectionAfterRestart: gauges come from durable state, so a
// fresh process (new Manager, new MeterProvider) is right at once.
func TestFirstCollectionAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "attachments.log")
	ctx := context.Background()
	const n = 25

	fs1, err := attach.NewFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{}
	clock.set(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	m1, err := attach.NewManager(ctx, fs1, attach.WithClock(clock.now))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		mustAttach(t, m1, attach.Request{VolumeID: fmt.Sprintf("pvc-%d", i), NodeID: "node-1", Mode: attach.Migratable, MigrationTimeout: time.Hour})
	}
	for i := 0; i < 3; i++ { // three volumes mid-migration, the first with a short timeout
		timeout := time.Hour
		if i == 0 {
			timeout = time.Minute
		}
		mustAttach(t, m1, attach.Request{VolumeID: fmt.Sprintf("pvc-%d", i), NodeID: "node-2", Mode: attach.Migratable, MigrationTimeout: timeout})
	}
	if err := m1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fs1.Close(); err != nil {
		t.Fatal(err)
	}

	fs2, err := attach.NewFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fs2.Close() })
	clock.advance(10 * time.Minute) // the process was down; one migration timed out meanwhile
	m2 := newManager(t, fs2, attach.WithClock(clock.now))
	r, mp := newReader(t)
	newOTel(t, mp, m2)

	got := collect(t, r).gauges(t)
	want := attach.Counts{Volumes: n, NodeAttachments: n + 3, Migrations: 3, TimedOutMigrations: 1}
	if got != want {
		t.Errorf("first collection after restart %+v, want %+v", got, want)
	}
	if listed := countsFromList(m2.List(), clock.now()); listed != want {
		t.Errorf("manager lists %+v after restart, want %+v", listed, want)
	}
}
