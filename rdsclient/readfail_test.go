package rdsclient_test

import (
	"errors"
	"os"
	"testing"

	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

// printFailures are answers to a print that are errors, never "not
// found" (rdsclient/docs/device.md, "Output format" and "Error texts and
// their classes"): failure text, syntax errors and a bare non-zero exit
// status.
var printFailures = []struct {
	name   string
	output string
	status int
	want   error
}{
	{"no such item", "failure: no such item", 1, rdsclient.ErrUnexpectedOutput},
	{"no such item exit 0", "failure: no such item", 0, rdsclient.ErrUnexpectedOutput},
	{"other failure", "failure: interrupted", 1, rdsclient.ErrUnexpectedOutput},
	{"bad command", "bad command name print (line 1 column 7)", 1, rdsclient.ErrInvalid},
	{"syntax", "syntax error (line 1 column 30)", 1, rdsclient.ErrInvalid},
	{"silent exit 1", "", 1, rdsclient.ErrUnexpectedOutput},
	{"legend then failure", "Flags: X - disabled; B - blocked\nfailure: no such item", 1, rdsclient.ErrUnexpectedOutput},
}

func TestFailingPrintIsNeverNotFound(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	if _, err := c.CreateDisk(ctx, spec("pvc-pf", gib)); err != nil {
		t.Fatal(err)
	}
	reads := []struct {
		name, pattern string
		call          func() error
	}{
		{"Disk", `^/disk print`, func() error { _, err := c.Disk(ctx, "pvc-pf"); return err }},
		{"Disk missing", `^/disk print`, func() error { _, err := c.Disk(ctx, "pvc-none"); return err }},
		{"Disks", `^/disk print`, func() error { _, err := c.Disks(ctx, "pvc-"); return err }},
		{"Capacity", `^/disk print`, func() error { _, err := c.Capacity(ctx, pool); return err }},
		{"Files", `^/file print`, func() error { _, err := c.Files(ctx, "/storage-pool/k8s"); return err }},
		{"DeleteDisk", `^/disk print`, func() error { return c.DeleteDisk(ctx, "pvc-pf") }},
		{"DeleteDisk missing", `^/disk print`, func() error { return c.DeleteDisk(ctx, "pvc-none") }},
		{"ResizeDisk", `^/disk print`, func() error { _, err := c.ResizeDisk(ctx, "pvc-pf", 2*gib); return err }},
		{"CopyDisk", `^/disk print`, func() error { _, err := c.CopyDisk(ctx, "pvc-pf", spec("pvc-pf-copy", 0)); return err }},
	}
	for _, r := range reads {
		for _, f := range printFailures {
			t.Run(r.name+"/"+f.name, func(t *testing.T) {
				remove := srv.Inject(rdstest.AnswerNth(r.pattern, 1, f.output, f.status))
				defer remove()
				srv.ResetCommands()
				err := r.call()
				if err == nil || errors.Is(err, rdsclient.ErrNotFound) || !errors.Is(err, f.want) {
					t.Fatalf("err = %v, want %v and not ErrNotFound", err, f.want)
				}
				var ce *rdsclient.CommandError
				if !errors.As(err, &ce) || ce.Class != f.want {
					t.Errorf("err %v: want *CommandError with class %v", err, f.want)
				}
				if cmds := srv.Commands(); len(cmds) != 1 {
					t.Errorf("commands %q: want only the failing print", cmds)
				}
			})
		}
	}
	// Nothing was changed by any of the above.
	if _, err := c.Disk(ctx, "pvc-pf"); err != nil {
		t.Fatalf("disk gone after failing reads: %v", err)
	}
	if _, err := c.Disk(ctx, "pvc-pf-copy"); !errors.Is(err, rdsclient.ErrNotFound) {
		t.Fatalf("copy made despite a failing source read: %v", err)
	}
}

func TestPrintOfOtherItemIsNotNotFound(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	// A print that succeeds but shows some other disk did not prove that
	// the asked-for one is absent.
	other := " 0  type=file slot=\"pvc-other\" size=1 048 576 file-path=/storage-pool/o.img\r\n"
	srv.Inject(rdstest.AnswerNth(`^/disk print detail where slot="pvc-x"`, 1, other, 0))
	if _, err := c.Disk(ctx, "pvc-x"); !errors.Is(err, rdsclient.ErrUnexpectedOutput) {
		t.Errorf("Disk with another slot printed = %v, want ErrUnexpectedOutput", err)
	}
	pl := " 0  slot=other type=partition mount-point=other size=10 free=5\r\n"
	srv.Inject(rdstest.AnswerNth(`^/disk print detail where mount-point=`, 1, pl, 0))
	if _, err := c.Capacity(ctx, pool); !errors.Is(err, rdsclient.ErrUnexpectedOutput) {
		t.Errorf("Capacity with another pool printed = %v, want ErrUnexpectedOutput", err)
	}
	// Garbage with exit status 0 is not an empty listing either.
	srv.Inject(rdstest.AnswerNth(`^/disk print`, 1, "interrupted", 0))
	if _, err := c.Disk(ctx, "pvc-x"); !errors.Is(err, rdsclient.ErrUnexpectedOutput) {
		t.Errorf("Disk with garbage printed = %v, want ErrUnexpectedOutput", err)
	}
	// Only a successful print with nothing (or only the legend) is "not found".
	srv.Inject(rdstest.AnswerNth(`^/disk print`, 1, "Flags: X - disabled; B - blocked", 0))
	if _, err := c.Disk(ctx, "pvc-x"); !errors.Is(err, rdsclient.ErrNotFound) {
		t.Errorf("Disk with legend only = %v, want ErrNotFound", err)
	}
}

func TestDeleteDiskConfirmsAbsence(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	mk := func(slot string) string {
		t.Helper()
		if _, err := c.CreateDisk(ctx, spec(slot, gib)); err != nil {
			t.Fatal(err)
		}
		return mustDiskFile(t, srv, slot)
	}
	survives := func(slot, file string) {
		t.Helper()
		if _, err := c.Disk(ctx, slot); err != nil {
			t.Errorf("disk %s must survive: %v", slot, err)
		}
		if _, err := os.Stat(file); err != nil {
			t.Errorf("backing file of %s must survive: %v", slot, err)
		}
	}

	// The remove claims success but did nothing.
	file := mk("pvc-c1")
	remove := srv.Inject(rdstest.AnswerNth(`^/disk remove`, 1, "", 0))
	if err := c.DeleteDisk(ctx, "pvc-c1"); err == nil || errors.Is(err, rdsclient.ErrNotFound) {
		t.Errorf("DeleteDisk after a remove that did nothing = %v, want an error", err)
	}
	remove()
	survives("pvc-c1", file)
	if countCommands(srv, "/file remove") != 0 {
		t.Errorf("file removed although the disk is still there")
	}

	// The remove answers "no such item" but the disk is still there.
	remove = srv.Inject(rdstest.FailNth(`^/disk remove`, 1, "failure: no such item"))
	if err := c.DeleteDisk(ctx, "pvc-c1"); err == nil {
		t.Errorf("DeleteDisk after a false no such item = nil, want an error")
	}
	remove()
	survives("pvc-c1", file)

	// The read-back after the remove fails: the outcome is an error.
	srv.ResetCommands()
	remove = srv.Inject(rdstest.FailNth(`^/disk print`, 2, "failure: no such item"))
	err := c.DeleteDisk(ctx, "pvc-c1")
	remove()
	if err == nil || errors.Is(err, rdsclient.ErrNotFound) {
		t.Errorf("DeleteDisk with a failing read-back = %v, want an error", err)
	}
	if countCommands(srv, "/disk remove") != 1 {
		t.Errorf("commands %q: want one remove", srv.Commands())
	}

	// Normal delete: remove, print proving absence, file remove.
	file = mk("pvc-c2")
	srv.ResetCommands()
	if err := c.DeleteDisk(ctx, "pvc-c2"); err != nil {
		t.Fatalf("DeleteDisk: %v", err)
	}
	want := []string{
		`/disk print detail where slot="pvc-c2"`,
		`/disk remove [find slot="pvc-c2"]`,
		`/disk print detail where slot="pvc-c2"`,
		`/file remove [find name="storage-pool/k8s/pvc-c2.img"]`,
	}
	got := srv.Commands()
	if len(got) != len(want) {
		t.Fatalf("commands %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("command %d = %q, want %q", i, got[i], want[i])
		}
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("backing file still there: %v", err)
	}
}

func TestDiskStatsSilenceIsNotNotFound(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	srv.Inject(rdstest.AnswerNth(`^/disk monitor-traffic`, 1, "", 0))
	if _, err := c.DiskStats(ctx, "pvc-x"); !errors.Is(err, rdsclient.ErrUnexpectedOutput) {
		t.Errorf("DiskStats with no output = %v, want ErrUnexpectedOutput", err)
	}
	if _, err := c.DiskStats(ctx, "pvc-x"); !errors.Is(err, rdsclient.ErrNotFound) {
		t.Errorf("DiskStats of a missing disk = %v, want ErrNotFound", err)
	}
}
