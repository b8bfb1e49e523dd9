package rdstest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

func nqnOf(slot string) string { return "nqn.2000-02.com.mikrotik:" + slot }

// slots lists the slots /disk print terse shows for a where clause.
func slots(t *testing.T, out string) []string {
	t.Helper()
	var got []string
	for _, f := range strings.Fields(out) {
		if s, ok := strings.CutPrefix(f, "slot="); ok {
			got = append(got, s)
		}
	}
	return got
}

func TestDiskRemoveInUse(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	ok(t, c, addDisk("pvc-1", "1G")+exportArgs("pvc-1"))
	ok(t, c, addDisk("pvc-2", "1G")+exportArgs("pvc-2"))
	host, err := s.DiskFile("pvc-1")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.Initiators(nqnOf("pvc-1")); n != 0 {
		t.Fatalf("Initiators before any connect = %d", n)
	}
	if err := s.ConnectInitiator(nqnOf("pvc-1")); err != nil {
		t.Fatal(err)
	}
	if n := s.Initiators(nqnOf("pvc-1")); n != 1 {
		t.Fatalf("Initiators = %d, want 1", n)
	}

	for _, cmd := range []string{
		`/disk remove [find slot="pvc-1"]`,
		"/disk remove pvc-1",
		// Several targets: checked first, so pvc-2 survives too.
		"/disk remove pvc-2,pvc-1",
		`/disk remove [find slot~"^pvc-"]`,
	} {
		fails(t, c, cmd, "failure: disk is in use")
	}
	if got := slots(t, ok(t, c, `/disk print terse where slot~"^pvc-"`)); strings.Join(got, " ") != "pvc-1 pvc-2" {
		t.Fatalf("disks after refused removes: %v", got)
	}
	if got := fileSize(t, host); got != 1<<30 {
		t.Fatalf("backing file size %d after refused remove", got)
	}
	// The backing file of any disk stays protected.
	fails(t, c, `/file remove [find name="storage-pool/k8s/pvc-1.img"]`, "failure: file is in use")
	// An empty [find] is still a silent no-op, a missing name still no such item.
	ok(t, c, `/disk remove [find slot="nope"]`)
	fails(t, c, "/disk remove nope,pvc-1", "failure: no such item")
	// A disk nobody is connected to is removed as before.
	ok(t, c, "/disk remove pvc-2")

	s.DisconnectInitiator(nqnOf("pvc-1"))
	if n := s.Initiators(nqnOf("pvc-1")); n != 0 {
		t.Fatalf("Initiators after disconnect = %d", n)
	}
	ok(t, c, `/disk remove [find slot="pvc-1"]`)
	if got := slots(t, ok(t, c, `/disk print terse where slot~"^pvc-"`)); len(got) != 0 {
		t.Fatalf("disks left: %v", got)
	}
	// /disk remove leaves the file; now it can go.
	if _, err := os.Stat(host); err != nil {
		t.Fatalf("backing file after /disk remove: %v", err)
	}
	ok(t, c, `/file remove [find name="storage-pool/k8s/pvc-1.img"]`)
	if _, err := os.Stat(host); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("backing file after /file remove: %v", err)
	}
}

func TestInitiatorsCounted(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	ok(t, c, addDisk("pvc-1", "1G")+exportArgs("pvc-1"))
	nqn := nqnOf("pvc-1")
	// Two nodes during a live migration: two initiators.
	for range 2 {
		if err := s.ConnectInitiator(nqn); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Initiators(nqn); n != 2 {
		t.Fatalf("Initiators = %d, want 2", n)
	}
	s.DisconnectInitiator(nqn)
	if n := s.Initiators(nqn); n != 1 {
		t.Fatalf("Initiators after one disconnect = %d, want 1", n)
	}
	fails(t, c, "/disk remove pvc-1", "failure: disk is in use")
	s.DisconnectInitiator(nqn)
	s.DisconnectInitiator(nqn) // one too many: nothing happens
	if n := s.Initiators(nqn); n != 0 {
		t.Fatalf("Initiators after two disconnects = %d, want 0", n)
	}
	ok(t, c, "/disk remove pvc-1")
}

func TestConnectInitiatorNeedsExport(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	ok(t, c, addDisk("pvc-plain", "1G"))
	for _, nqn := range []string{nqnOf("nope"), nqnOf("pvc-plain"), ""} {
		if err := s.ConnectInitiator(nqn); !errors.Is(err, rdstest.ErrNotFound) {
			t.Errorf("ConnectInitiator(%q) = %v, want ErrNotFound", nqn, err)
		}
		if n := s.Initiators(nqn); n != 0 {
			t.Errorf("Initiators(%q) = %d after a failed connect", nqn, n)
		}
	}
	ok(t, c, "/disk remove pvc-plain")
	// A foreign export (a host's boot volume) can be connected too.
	s.AddForeignDisk(rdstest.ForeignDisk{Slot: "boot-1", Type: "file", FilePath: "/storage-pool/boot/host1.img", SizeBytes: 1 << 20, NQN: nqnOf("boot-1")})
	if err := s.ConnectInitiator(nqnOf("boot-1")); err != nil {
		t.Fatal(err)
	}
	fails(t, c, "/disk remove boot-1", "failure: disk is in use")
}

func TestInitiatorsAfterExportChange(t *testing.T) {
	s := newServer(t)
	c := dial(t, s, "")
	ok(t, c, addDisk("pvc-1", "1G")+exportArgs("pvc-1"))
	nqn := nqnOf("pvc-1")
	if err := s.ConnectInitiator(nqn); err != nil {
		t.Fatal(err)
	}
	// Turning the export off does not drop the connected host (chosen).
	ok(t, c, "/disk set pvc-1 nvme-tcp-export=no")
	fails(t, c, "/disk remove pvc-1", "failure: disk is in use")
	if err := s.ConnectInitiator(nqn); !errors.Is(err, rdstest.ErrNotFound) {
		t.Fatalf("connect to an un-exported disk = %v, want ErrNotFound", err)
	}
	// Another disk may now export the NQN; hosts connected to it are its own.
	ok(t, c, addDisk("pvc-2", "1G")+exportArgs("pvc-1"))
	if err := s.ConnectInitiator(nqn); err != nil {
		t.Fatal(err)
	}
	if n := s.Initiators(nqn); n != 2 {
		t.Fatalf("Initiators = %d, want 2", n)
	}
	s.DisconnectInitiator(nqn) // the exporting disk's connection goes first
	ok(t, c, "/disk remove pvc-2")
	fails(t, c, "/disk remove pvc-1", "failure: disk is in use")
	// A new NQN: the connection stays the disk's, under the old NQN.
	ok(t, c, "/disk set pvc-1 nvme-tcp-export=yes nvme-tcp-server-nqn="+nqnOf("renamed"))
	if a, b := s.Initiators(nqn), s.Initiators(nqnOf("renamed")); a != 1 || b != 0 {
		t.Fatalf("Initiators old %d new %d, want 1 and 0", a, b)
	}
	fails(t, c, "/disk remove pvc-1", "failure: disk is in use")
	s.DisconnectInitiator(nqn)
	ok(t, c, "/disk remove pvc-1")
}

func TestInitiatorsAreLiveState(t *testing.T) {
	dir := t.TempDir()
	s, err := rdstest.NewServer(rdstest.WithDataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, s, "")
	ok(t, c, addDisk("pvc-1", "1G")+exportArgs("pvc-1"))
	nqn := nqnOf("pvc-1")
	if err := s.ConnectInitiator(nqn); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ".rdstest-state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"pvc-1"`) || strings.Contains(string(b), "initiator") {
		t.Fatalf("saved state:\n%s", b)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Closed: connections are gone and no host can connect.
	if n := s.Initiators(nqn); n != 0 {
		t.Fatalf("Initiators after Close = %d", n)
	}
	if err := s.ConnectInitiator(nqn); !errors.Is(err, rdstest.ErrClosed) {
		t.Fatalf("ConnectInitiator after Close = %v, want ErrClosed", err)
	}
	s.DisconnectInitiator(nqn) // harmless

	// Restarted on the same data: the disk is back, its hosts are not.
	s2 := newServer(t, rdstest.WithDataDir(dir))
	if n := s2.Initiators(nqn); n != 0 {
		t.Fatalf("Initiators after restart = %d", n)
	}
	c2 := dial(t, s2, "")
	ok(t, c2, "/disk remove pvc-1")
}

// The real client over SSH sees a connected disk as rdsclient.ErrInUse.
func TestClientDeleteDiskInUse(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()
	client := dialClient(t, s)
	const slot = "pvc-busy"
	if _, err := client.CreateDisk(ctx, rdsclient.DiskSpec{
		Slot: slot, FilePath: "/storage-pool/k8s/" + slot + ".img", SizeBytes: 1 << 30,
		Export: &rdsclient.NVMeExport{NQN: nqnOf(slot)},
	}); err != nil {
		t.Fatal(err)
	}
	d, err := client.Disk(ctx, slot)
	if err != nil {
		t.Fatal(err)
	}
	host, err := s.DiskFile(slot)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ConnectInitiator(nqnOf(slot)); err != nil {
		t.Fatal(err)
	}
	err = client.DeleteDisk(ctx, d)
	var ce *rdsclient.CommandError
	if !errors.Is(err, rdsclient.ErrInUse) || !errors.As(err, &ce) || ce.ExitStatus != 1 {
		t.Fatalf("DeleteDisk of a connected disk = %v, want ErrInUse *CommandError", err)
	}
	if _, err := client.Disk(ctx, slot); err != nil {
		t.Fatalf("connected disk must survive: %v", err)
	}
	if _, err := os.Stat(host); err != nil {
		t.Fatalf("backing file of the connected disk: %v", err)
	}
	s.DisconnectInitiator(nqnOf(slot))
	if err := client.DeleteDisk(ctx, d); err != nil {
		t.Fatalf("DeleteDisk after disconnect: %v", err)
	}
	if _, err := client.Disk(ctx, slot); !errors.Is(err, rdsclient.ErrNotFound) {
		t.Fatalf("Disk after delete = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(host); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("backing file after DeleteDisk: %v", err)
	}
}

// The real client parses the whole monitor-traffic output, further keys
// included.
func TestClientDiskStatsFullOutput(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()
	client := dialClient(t, s)
	s.SetTraffic("storage-pool", rdstest.Traffic{ReadOps: 243401, ReadBytes: 33131503616, WriteOps: 17667231,
		WriteBytes: 515659673600, WriteRateBits: 12_800_000, InFlightOps: 2, ReadRateBits: 4_000,
		ReadMerges: 11, WriteMerges: 22, DiscardOps: 33, DiscardMerges: 44, DiscardBytes: 1 << 40, FlushOps: 55})
	got, err := client.DiskStats(ctx, "storage-pool")
	if err != nil {
		t.Fatal(err)
	}
	want := rdsclient.DiskStats{Slot: "storage-pool", ReadOps: 243401, ReadBytes: 33131503616, ReadRateBits: 4_000,
		WriteOps: 17667231, WriteBytes: 515659673600, WriteRateBits: 12_800_000, InFlightOps: 2}
	if got != want {
		t.Fatalf("DiskStats = %+v\nwant %+v", got, want)
	}
}

// A test simulates a node that still has a volume connected.
func ExampleServer_ConnectInitiator() {
	srv, err := rdstest.NewServer()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	ctx := context.Background()
	client, err := rdsclient.Dial(ctx, srv.Addr(), srv.ClientConfig())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	const nqn = "nqn.2000-02.com.mikrotik:pvc-1"
	d, err := client.CreateDisk(ctx, rdsclient.DiskSpec{
		Slot: "pvc-1", FilePath: "/storage-pool/k8s/pvc-1.img", SizeBytes: 1 << 30,
		Export: &rdsclient.NVMeExport{NQN: nqn},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := srv.ConnectInitiator(nqn); err != nil {
		fmt.Println(err)
		return
	}
	err = client.DeleteDisk(ctx, d)
	fmt.Println(errors.Is(err, rdsclient.ErrInUse), srv.Initiators(nqn))
	srv.DisconnectInitiator(nqn)
	fmt.Println(client.DeleteDisk(ctx, d))
	// Output:
	// true 1
	// <nil>
}

// dialClient returns a real rdsclient.Client of s, closed at the end of
// the test.
func dialClient(t *testing.T, s *rdstest.Server) *rdsclient.Client {
	t.Helper()
	client, err := rdsclient.Dial(context.Background(), s.Addr(), s.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}
