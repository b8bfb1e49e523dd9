package rdscsi_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
	"github.com/srvlab/rds-csi/rdscsi"
)

func TestSnapshots(t *testing.T) {
	created := time.Date(2025, 11, 12, 8, 30, 15, 0, time.UTC)
	e := newCtrlTestEnv(t, ctrlTestConfig{ctrlOpts: []rdscsi.ControllerOption{
		rdscsi.WithClock(func() time.Time { return created }),
	}})
	ctx := context.Background()
	a := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("snap-src-a", 32*ctrlTestMiB)))(t).GetVolume()
	b := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("snap-src-b", 48*ctrlTestMiB)))(t).GetVolume()

	s1 := ctrlTestMust(e.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "s1", SourceVolumeId: a.VolumeId}))(t).GetSnapshot()
	if s1.SnapshotId != rdscsi.SnapshotIDForName("s1") || s1.SourceVolumeId != a.VolumeId ||
		s1.SizeBytes != 32*ctrlTestMiB || !s1.ReadyToUse || !s1.CreationTime.AsTime().Equal(created) {
		t.Fatalf("snapshot %v", s1)
	}
	d := ctrlTestMust(e.client.Disk(ctx, s1.SnapshotId))(t)
	wantPath := ctrlTestVolumePath + "/" + s1.SnapshotId + ".from-" + a.VolumeId + ".at-" + "1762936215" + ".img"
	if d.Export != nil || d.FilePath != wantPath {
		t.Errorf("snapshot disk %+v, want unexported at %s", d, wantPath)
	}

	t.Run("idempotent by name", func(t *testing.T) {
		again := ctrlTestMust(e.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "s1", SourceVolumeId: a.VolumeId}))(t).GetSnapshot()
		if again.SnapshotId != s1.SnapshotId || !again.CreationTime.AsTime().Equal(created) {
			t.Errorf("retry %v", again)
		}
		_, err := e.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "s1", SourceVolumeId: b.VolumeId})
		ctrlTestCode(t, err, codes.AlreadyExists)
	})

	s2 := ctrlTestMust(e.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "s2", SourceVolumeId: b.VolumeId}))(t).GetSnapshot()
	s3 := ctrlTestMust(e.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "s3", SourceVolumeId: a.VolumeId,
		Parameters: map[string]string{"volumePath": "/storage-pool/snaps", "csi.storage.k8s.io/volumesnapshot/name": "x"}}))(t).GetSnapshot()
	if d := ctrlTestMust(e.client.Disk(ctx, s3.SnapshotId))(t); !strings.HasPrefix(d.FilePath, "/storage-pool/snaps/") {
		t.Errorf("snapshot volumePath ignored: %s", d.FilePath)
	}
	// Noise that must not be listed: a foreign "snap-" disk.
	e.rds.AddForeignDisk(rdstest.ForeignDisk{Slot: "snap-manual", Type: "file", FilePath: "/storage-pool/manual.img", SizeBytes: ctrlTestMiB})

	ids := func(resp *csi.ListSnapshotsResponse) []string {
		var out []string
		for _, en := range resp.Entries {
			out = append(out, en.Snapshot.SnapshotId)
		}
		return out
	}
	sorted := func(s ...string) []string { slices.Sort(s); return s }

	t.Run("list", func(t *testing.T) {
		all := ctrlTestMust(e.cc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{}))(t)
		if got, want := ids(all), sorted(s1.SnapshotId, s2.SnapshotId, s3.SnapshotId); !slices.Equal(got, want) {
			t.Errorf("all: %v, want %v", got, want)
		}
		byID := ctrlTestMust(e.cc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: s2.SnapshotId}))(t)
		if got := ids(byID); !slices.Equal(got, []string{s2.SnapshotId}) || byID.Entries[0].Snapshot.SourceVolumeId != b.VolumeId {
			t.Errorf("by ID: %v", byID)
		}
		bySource := ctrlTestMust(e.cc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: a.VolumeId}))(t)
		if got, want := ids(bySource), sorted(s1.SnapshotId, s3.SnapshotId); !slices.Equal(got, want) {
			t.Errorf("by source: %v, want %v", got, want)
		}
		both := ctrlTestMust(e.cc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: s2.SnapshotId, SourceVolumeId: a.VolumeId}))(t)
		if len(both.Entries) != 0 {
			t.Errorf("ID and other source: %v", both)
		}
		for _, r := range []*csi.ListSnapshotsRequest{
			{SnapshotId: "none-exist-id"},
			{SnapshotId: rdscsi.SnapshotIDForName("missing")},
			{SourceVolumeId: rdscsi.VolumeIDForName("missing")},
		} {
			if resp := ctrlTestMust(e.cc.ListSnapshots(ctx, r))(t); len(resp.Entries) != 0 {
				t.Errorf("%v: %v", r, resp)
			}
		}
		p1 := ctrlTestMust(e.cc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{MaxEntries: 2}))(t)
		p2 := ctrlTestMust(e.cc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{StartingToken: p1.NextToken}))(t)
		if got := append(ids(p1), ids(p2)...); !slices.Equal(got, ids(all)) || p2.NextToken != "" {
			t.Errorf("pages %v + %v", ids(p1), ids(p2))
		}
		_, err := e.cc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{StartingToken: "invalid-token"})
		ctrlTestCode(t, err, codes.Aborted)
		_, err = e.cc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{MaxEntries: -2})
		ctrlTestCode(t, err, codes.InvalidArgument)
	})

	t.Run("get", func(t *testing.T) {
		g := ctrlTestMust(e.cc.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: s3.SnapshotId}))(t)
		if g.Snapshot.SourceVolumeId != a.VolumeId || g.Snapshot.SizeBytes != 32*ctrlTestMiB {
			t.Errorf("get: %v", g)
		}
		for _, id := range []string{"none-exist-id", rdscsi.SnapshotIDForName("missing"), "snap-manual", a.VolumeId} {
			_, err := e.cc.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: id})
			ctrlTestCode(t, err, codes.NotFound)
		}
		_, err := e.cc.GetSnapshot(ctx, &csi.GetSnapshotRequest{})
		ctrlTestCode(t, err, codes.InvalidArgument)
	})

	t.Run("a fresh controller reads lineage and time from the device", func(t *testing.T) {
		fresh, err := rdscsi.NewControllerServer(e.client, nil) // other clock, no state
		if err != nil {
			t.Fatal(err)
		}
		resp, err := fresh.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: b.VolumeId})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Entries) != 1 {
			t.Fatalf("fresh list: %v", resp)
		}
		got := resp.Entries[0].Snapshot
		if got.SnapshotId != s2.SnapshotId || got.SourceVolumeId != b.VolumeId || !got.CreationTime.AsTime().Equal(created) || got.SizeBytes != 48*ctrlTestMiB {
			t.Errorf("fresh controller sees %v", got)
		}
		// And it still answers the CO's retry of CreateSnapshot alike.
		again, err := fresh.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "s2", SourceVolumeId: b.VolumeId})
		if err != nil || !again.Snapshot.CreationTime.AsTime().Equal(created) {
			t.Errorf("fresh retry: %v %v", again, err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for name, r := range map[string]*csi.CreateSnapshotRequest{
			"no name":           {SourceVolumeId: "testId"},
			"no source":         {Name: "x"},
			"unknown parameter": {Name: "x", SourceVolumeId: a.VolumeId, Parameters: map[string]string{"retention": "1d"}},
		} {
			_, err := e.cc.CreateSnapshot(ctx, r)
			if code := status.Code(err); code != codes.InvalidArgument {
				t.Errorf("%s: %v, want InvalidArgument", name, err)
			}
		}
		for _, src := range []string{"fake-vol-id", rdscsi.VolumeIDForName("missing")} {
			_, err := e.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "orphan-" + src, SourceVolumeId: src})
			ctrlTestCode(t, err, codes.NotFound)
		}
	})

	t.Run("delete", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			ctrlTestMust(e.cc.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: s1.SnapshotId}))(t)
		}
		e.rds.ResetCommands()
		ctrlTestMust(e.cc.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: "reallyfakesnapshotid"}))(t)
		if c := e.rds.Commands(); len(c) != 0 {
			t.Errorf("malformed ID reached the console: %q", c)
		}
		_, err := e.cc.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{})
		ctrlTestCode(t, err, codes.InvalidArgument)
		for _, s := range []string{s2.SnapshotId, s3.SnapshotId} {
			ctrlTestMust(e.cc.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: s}))(t)
		}
		if got := e.diskSlots(t, "snap-"); !slices.Equal(got, []string{"snap-manual"}) {
			t.Errorf("snapshot disks left: %v", got)
		}
		for _, dir := range []string{"storage-pool/k8s", "storage-pool/snaps"} {
			for _, f := range e.fileNames(t, dir) {
				if strings.Contains(f, "/snap-") {
					t.Errorf("snapshot file left: %s", f)
				}
			}
		}
	})
}

func TestSnapshotCopyInterrupted(t *testing.T) {
	e := newCtrlTestEnv(t, ctrlTestConfig{})
	ctx := context.Background()
	v := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("interrupted", 16*ctrlTestMiB)))(t).GetVolume()
	// The copy runs, then the connection drops before the answer: the
	// client reads the disk back and the RPC succeeds, or the CO's retry
	// finds the snapshot; never two copies.
	e.rds.Inject(rdstest.DropAfterRun(`copy-from`, 1))
	var snap *csi.Snapshot
	for i := 0; i < 5 && snap == nil; i++ {
		resp, err := e.cc.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "int", SourceVolumeId: v.VolumeId})
		if err == nil {
			snap = resp.Snapshot
		}
	}
	if snap == nil {
		t.Fatal("snapshot never succeeded")
	}
	if got := e.diskSlots(t, "snap-"); len(got) != 1 {
		t.Errorf("snapshot disks %v", got)
	}
	adds := 0
	for _, c := range e.rds.Commands() {
		if strings.Contains(c, "copy-from") {
			adds++
		}
	}
	if adds != 1 {
		t.Errorf("%d copy commands", adds)
	}
}

// TestCreateSnapshotOverOrphanFile: a DeleteSnapshot whose file removal
// failed leaves the backing file behind, and creating the snapshot again
// in the same clock second names the same file. No snapshot of that name
// exists, so AlreadyExists (reserved by the spec for a snapshot of the
// same name from another source) is wrong: the leftover, used by no disk,
// is removed and the copy made once more, also in a directory where no
// other disk of ours lives.
func TestCreateSnapshotOverOrphanFile(t *testing.T) {
	at := time.Date(2025, 11, 12, 8, 30, 15, 0, time.UTC)
	e := newCtrlTestEnv(t, ctrlTestConfig{ctrlOpts: []rdscsi.ControllerOption{
		rdscsi.WithClock(func() time.Time { return at }),
	}})
	ctx := context.Background()
	v := ctrlTestMust(e.cc.CreateVolume(ctx, ctrlTestCreateReq("orphan-snap-src", 16*ctrlTestMiB)))(t).GetVolume()
	for _, tc := range []struct {
		name   string
		params map[string]string
		dir    string
	}{
		{"volume directory", nil, "storage-pool/k8s"},
		{"directory of its own", map[string]string{rdscsi.ParamVolumePath: "/storage-pool/snaps"}, "storage-pool/snaps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &csi.CreateSnapshotRequest{Name: "orphaned " + tc.name, SourceVolumeId: v.VolumeId, Parameters: tc.params}
			s := ctrlTestMust(e.cc.CreateSnapshot(ctx, req))(t).GetSnapshot()
			file := ctrlTestMust(e.client.Disk(ctx, s.SnapshotId))(t).FilePath
			remove := e.rds.Inject(rdstest.FailAlways(`^/file remove`, "failure: file is busy"))
			_, err := e.cc.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: s.SnapshotId})
			remove()
			if err == nil {
				t.Fatal("DeleteSnapshot succeeded while file removal fails")
			}
			if _, err := e.client.Disk(ctx, s.SnapshotId); !errors.Is(err, rdsclient.ErrNotFound) {
				t.Fatalf("snapshot disk after the failed deletion: %v", err)
			}
			if !slices.Contains(e.fileNames(t, tc.dir), strings.TrimPrefix(file, "/")) {
				t.Fatalf("backing file %s already gone: %v", file, e.fileNames(t, tc.dir))
			}

			again, err := e.cc.CreateSnapshot(ctx, req)
			if err != nil {
				t.Fatalf("CreateSnapshot over the file a failed deletion left: %v", err)
			}
			d := ctrlTestMust(e.client.Disk(ctx, again.Snapshot.SnapshotId))(t)
			if again.Snapshot.SnapshotId != s.SnapshotId || again.Snapshot.SourceVolumeId != v.VolumeId || d.FilePath != file {
				t.Errorf("snapshot %v on disk %+v, want %s of %s at %s", again.Snapshot, d, s.SnapshotId, v.VolumeId, file)
			}
		})
	}
}
