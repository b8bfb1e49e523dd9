package rdsclient_test

import (
	"errors"
	"os"
	"regexp"
	"strings"
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
	pf, err := c.CreateDisk(ctx, spec("pvc-pf", gib))
	if err != nil {
		t.Fatal(err)
	}
	none := pf // a disk as read before it went
	none.Slot = "pvc-none"
	// The reads, and the mutations' read-backs. The mutation (pattern
	// in mutation) is kept from running, so that nothing changes, and
	// is answered as how says: "unknown", its outcome unknown because
	// the connection dropped, after which every mutation reads back; or
	// "silent", as a successful command, after which DeleteDisk,
	// ResizeDisk and CopyDisk without a size still read back (CreateDisk
	// and a sized CopyDisk do not). The read-back failing, the mutation
	// must fail with it: taken for absence, a delete would go on to
	// remove the file, a create or resize would be sent again.
	const unknown, silent = "unknown", "silent"
	reads := []struct {
		name, pattern string
		mutation, how string // the command kept from running, and its answer
		call          func() error
	}{
		{"Disk", `^/disk print`, "", "", func() error { _, err := c.Disk(ctx, "pvc-pf"); return err }},
		{"Disk missing", `^/disk print`, "", "", func() error { _, err := c.Disk(ctx, "pvc-none"); return err }},
		{"Disks", `^/disk print`, "", "", func() error { _, err := c.Disks(ctx, "pvc-"); return err }},
		{"Capacity", `^/disk print`, "", "", func() error { _, err := c.Capacity(ctx, pool); return err }},
		{"Files", `^/file print`, "", "", func() error { _, err := c.Files(ctx, "/storage-pool/k8s"); return err }},
		{"read then DeleteDisk", `^/disk print`, "", "", func() error { return deleteSlot(ctx, c, "pvc-pf") }},
		{"DeleteDisk read-back", `^/disk print`, `^/disk remove`, unknown, func() error { return c.DeleteDisk(ctx, pf) }},
		{"DeleteDisk missing read-back", `^/disk print`, `^/disk remove`, unknown, func() error { return c.DeleteDisk(ctx, none) }},
		{"DeleteDisk silent read-back", `^/disk print`, `^/disk remove`, silent, func() error { return c.DeleteDisk(ctx, pf) }},
		{"ResizeDisk read-back", `^/disk print`, `^/disk set`, unknown, func() error { _, err := c.ResizeDisk(ctx, pf, 2*gib); return err }},
		{"ResizeDisk silent read-back", `^/disk print`, `^/disk set`, silent, func() error { _, err := c.ResizeDisk(ctx, pf, 2*gib); return err }},
		{"CreateDisk read-back", `^/disk print`, `^/disk add`, unknown, func() error { _, err := c.CreateDisk(ctx, spec("pvc-pf-new", gib)); return err }},
		{"CopyDisk read-back", `^/disk print`, `^/disk add`, unknown, func() error { _, err := c.CopyDisk(ctx, pf, spec("pvc-pf-copy", 0)); return err }},
		{"CopyDisk silent read-back", `^/disk print`, `^/disk add`, silent, func() error { _, err := c.CopyDisk(ctx, pf, spec("pvc-pf-copy", 0)); return err }},
	}
	for _, r := range reads {
		for _, f := range printFailures {
			t.Run(r.name+"/"+f.name, func(t *testing.T) {
				remove := srv.Inject(rdstest.AnswerNth(r.pattern, 1, f.output, f.status))
				defer remove()
				srv.ResetCommands()
				switch r.how {
				case unknown:
					unknownOutcome(t, srv, r.mutation)
				case silent:
					defer srv.Inject(rdstest.AnswerNth(r.mutation, 1, "", 0))()
				}
				err := r.call()
				if err == nil || errors.Is(err, rdsclient.ErrNotFound) || !errors.Is(err, f.want) {
					t.Fatalf("err = %v, want %v and not ErrNotFound", err, f.want)
				}
				var ce *rdsclient.CommandError
				if !errors.As(err, &ce) || ce.Class != f.want || !strings.HasPrefix(ce.Command, strings.TrimPrefix(r.pattern, "^")) {
					t.Errorf("err %v: want the print's *CommandError with class %v", err, f.want)
				}
				cmds := srv.Commands()
				switch {
				case r.mutation == "" && len(cmds) != 1:
					t.Errorf("commands %q: want only the failing print", cmds)
				case r.mutation != "" && (len(cmds) != 2 || !regexp.MustCompile(r.mutation).MatchString(cmds[0])):
					t.Errorf("commands %q: want the mutation and the failing print", cmds)
				}
			})
		}
	}
	// Nothing was changed by any of the above.
	if d, err := c.Disk(ctx, "pvc-pf"); err != nil || d.SizeBytes != gib {
		t.Fatalf("disk changed after failing reads: %+v, %v", d, err)
	}
	if _, err := os.Stat(mustDiskFile(t, srv, "pvc-pf")); err != nil {
		t.Fatalf("backing file gone after failing reads: %v", err)
	}
	for _, slot := range []string{"pvc-pf-copy", "pvc-pf-new"} {
		if _, err := c.Disk(ctx, slot); !errors.Is(err, rdsclient.ErrNotFound) {
			t.Fatalf("%s made despite a failing read-back: %v", slot, err)
		}
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

// TestDeleteDiskConfirmsAbsence: DeleteDisk returns nil, and removes the
// backing file, only after a print has shown the disk absent. Neither a
// silent remove (which an empty [find] also is) nor "no such item" is
// taken on trust, and a failing read-back is an error, not absence.
func TestDeleteDiskConfirmsAbsence(t *testing.T) {
	srv := newServer(t)
	c := dial(t, srv)
	ctx := testCtx(t)
	mk := func(slot string) (rdsclient.Disk, string) {
		t.Helper()
		if _, err := c.CreateDisk(ctx, spec(slot, gib)); err != nil {
			t.Fatal(err)
		}
		return mustDisk(t, c, slot), mustDiskFile(t, srv, slot)
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
	sent := func(want ...string) {
		t.Helper()
		if got := srv.Commands(); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	stillExists := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, rdsclient.ErrUnexpectedOutput) || errors.Is(err, rdsclient.ErrNotFound) || !strings.Contains(err.Error(), "still exists after") {
			t.Errorf("DeleteDisk after %s = %v, want ErrUnexpectedOutput: still exists after the remove", what, err)
		}
	}
	const (
		remove1 = `/disk remove [find slot="pvc-c1"]`
		print1  = `/disk print detail where slot="pvc-c1"`
	)

	// The remove claims success but did nothing: the print shows the
	// disk, so DeleteDisk fails and the file is not removed.
	d, file := mk("pvc-c1")
	srv.ResetCommands()
	remove := srv.Inject(rdstest.AnswerNth(`^/disk remove`, 1, "", 0))
	stillExists("a remove that did nothing", c.DeleteDisk(ctx, d))
	remove()
	sent(remove1, print1)
	survives("pvc-c1", file)

	// The remove answers "no such item" but the disk is still there:
	// the same.
	srv.ResetCommands()
	remove = srv.Inject(rdstest.FailNth(`^/disk remove`, 1, "failure: no such item"))
	stillExists("a false no such item", c.DeleteDisk(ctx, d))
	remove()
	sent(remove1, print1)
	survives("pvc-c1", file)

	// The remove runs but the read-back after it fails: the outcome is
	// that error, not absence, and the file is left alone although the
	// disk has gone.
	srv.ResetCommands()
	remove = srv.Inject(rdstest.FailNth(`^/disk print`, 1, "failure: no such item"))
	err := c.DeleteDisk(ctx, d)
	remove()
	var ce *rdsclient.CommandError
	if !errors.Is(err, rdsclient.ErrUnexpectedOutput) || errors.Is(err, rdsclient.ErrNotFound) || !errors.As(err, &ce) || ce.Command != print1 {
		t.Errorf("DeleteDisk with a failing read-back = %v, want the print's ErrUnexpectedOutput", err)
	}
	sent(remove1, print1)
	if _, err := c.Disk(ctx, "pvc-c1"); !errors.Is(err, rdsclient.ErrNotFound) {
		t.Errorf("Disk(pvc-c1) after its remove ran = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("backing file removed without a read-back proving the disk gone: %v", err)
	}

	// Normal delete: remove, print proving absence, file remove.
	d, file = mk("pvc-c2")
	srv.ResetCommands()
	if err := c.DeleteDisk(ctx, d); err != nil {
		t.Fatalf("DeleteDisk: %v", err)
	}
	sent(
		`/disk remove [find slot="pvc-c2"]`,
		`/disk print detail where slot="pvc-c2"`,
		`/file remove [find name="storage-pool/k8s/pvc-c2.img"]`,
	)
	if _, err := c.Disk(ctx, "pvc-c2"); !errors.Is(err, rdsclient.ErrNotFound) {
		t.Errorf("disk still there: %v", err)
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
