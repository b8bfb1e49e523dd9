package attach_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/srvlab/rds-csi/attach"
)

func Example() {
	ctx := context.Background()
	m, err := attach.NewManager(ctx, attach.NewMemStore())
	if err != nil {
		panic(err)
	}
	defer m.Close()

	err = m.Attach(ctx, attach.Request{VolumeID: "pvc-1", NodeID: "node-a", Mode: attach.Exclusive})
	fmt.Println("attach:", err)
	err = m.Attach(ctx, attach.Request{VolumeID: "pvc-1", NodeID: "node-b", Mode: attach.Exclusive})
	fmt.Println("conflict:", errors.Is(err, attach.ErrConflict))
	fmt.Printf("%+v\n", m.Counts())
	// Output:
	// attach: <nil>
	// conflict: true
	// {Volumes:1 NodeAttachments:1 Migrations:0 TimedOutMigrations:0}
}

// A live migration: the second node may join a migratable volume, a third
// may not, and after the timeout no node may join until one side leaves.
func ExampleManager_Attach_migration() {
	ctx := context.Background()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	m, _ := attach.NewManager(ctx, attach.NewMemStore(), attach.WithClock(clock),
		attach.WithObserver(func(e attach.Event) { fmt.Println("event:", e.Kind, e.NodeID) }))

	req := attach.Request{VolumeID: "pvc-vm", Mode: attach.Migratable, MigrationTimeout: time.Minute}
	for _, node := range []string{"node-a", "node-b", "node-c"} {
		req.NodeID = node
		fmt.Println(node, m.Attach(ctx, req))
	}
	now = now.Add(2 * time.Minute)
	fmt.Printf("%+v\n", m.Counts())
	fmt.Println("node-c", errors.Is(m.Attach(ctx, req), attach.ErrMigrationTimedOut))
	fmt.Println("detach", m.Detach(ctx, "pvc-vm", "node-a"))
	// Output:
	// event: attached node-a
	// node-a <nil>
	// event: attached node-b
	// event: migration_started node-b
	// node-b <nil>
	// event: conflict node-c
	// node-c attach: volume "pvc-vm" is attached to nodes "node-a" and "node-b": attach: migratable volume already attached to two nodes
	// event: migration_timed_out node-b
	// {Volumes:1 NodeAttachments:2 Migrations:1 TimedOutMigrations:1}
	// event: conflict node-c
	// node-c true
	// event: detached node-a
	// event: migration_completed node-a
	// detach <nil>
}

func ExampleNewFileStore() {
	dir, _ := os.MkdirTemp("", "attach-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	path := filepath.Join(dir, "attachments.log")

	store, _ := attach.NewFileStore(path)
	m, _ := attach.NewManager(ctx, store)
	fmt.Println(m.Attach(ctx, attach.Request{VolumeID: "pvc-1", NodeID: "node-a", Mode: attach.Exclusive}))
	m.Close()
	store.Close()

	// After a restart the state, and so the counts, are back.
	store, _ = attach.NewFileStore(path)
	defer store.Close()
	m, _ = attach.NewManager(ctx, store)
	defer m.Close()
	a, _ := m.Get("pvc-1")
	fmt.Println(a.Nodes, m.Counts().Volumes)
	// Output:
	// <nil>
	// [node-a] 1
}

// An observer built from the Manager itself, here one that reports the
// counts with each event, is added after NewManager.
func ExampleManager_AddObserver() {
	ctx := context.Background()
	m, err := attach.NewManager(ctx, attach.NewMemStore())
	if err != nil {
		panic(err)
	}
	defer m.Close()
	remove := m.AddObserver(func(e attach.Event) {
		fmt.Println(e.Kind, e.VolumeID, "volumes:", m.Counts().Volumes)
	})

	_ = m.Attach(ctx, attach.Request{VolumeID: "pvc-1", NodeID: "node-a", Mode: attach.Exclusive})
	_ = m.Detach(ctx, "pvc-1", "node-a")
	remove()
	_ = m.Attach(ctx, attach.Request{VolumeID: "pvc-2", NodeID: "node-a", Mode: attach.Exclusive})
	// Output:
	// attached pvc-1 volumes: 1
	// detached pvc-1 volumes: 0
}

// A log damaged before valid records is refused with ErrCorrupt and left
// as it is; an operator who accepts losing what follows the damage opens
// it once with WithTruncateAtCorruption.
func ExampleWithTruncateAtCorruption() {
	dir, _ := os.MkdirTemp("", "attach-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	path := filepath.Join(dir, "attachments.log")

	store, _ := attach.NewFileStore(path)
	var second int64
	for i, v := range []string{"pvc-1", "pvc-2", "pvc-3"} {
		if i == 1 {
			fi, _ := os.Stat(path)
			second = fi.Size()
		}
		_ = store.Put(ctx, attach.Attachment{VolumeID: v, Mode: attach.Exclusive, Nodes: []string{"node-a"}})
	}
	store.Close()

	// A stray write damages the second record; the third is intact.
	f, _ := os.OpenFile(path, os.O_WRONLY, 0)
	f.WriteAt([]byte{0xff}, second+10)
	f.Close()

	_, err := attach.NewFileStore(path)
	fmt.Println("corrupt:", errors.Is(err, attach.ErrCorrupt))

	store, err = attach.NewFileStore(path, attach.WithTruncateAtCorruption())
	if err != nil {
		panic(err)
	}
	defer store.Close()
	as, _ := store.Load(ctx)
	for _, a := range as {
		fmt.Println("kept:", a.VolumeID, a.Nodes)
	}
	// Output:
	// corrupt: true
	// kept: pvc-1 [node-a]
}
