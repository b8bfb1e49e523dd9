package rdsclient_test

import (
	"errors"
	"maps"
	"testing"

	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

// TestFileUsers: one print of every disk, whatever its slot or type,
// tells which disk uses which file; entries the client cannot otherwise
// read (no size) still count, and unparsable output fails the call rather
// than meaning "no users".
func TestFileUsers(t *testing.T) {
	srv := newServer(t)
	srv.AddForeignDisk(rdstest.ForeignDisk{Slot: "nvme1", Type: "nvme", SizeBytes: 512 * gib})
	srv.AddForeignDisk(rdstest.ForeignDisk{Slot: "recovery1", Type: "file", FilePath: "/storage-pool/k8s/pvc-a.img.bak", SizeBytes: gib})
	c := dial(t, srv)
	ctx := testCtx(t)
	if _, err := c.CreateDisk(ctx, spec("pvc-a", gib)); err != nil {
		t.Fatal(err)
	}
	srv.ResetCommands()
	users, err := c.FileUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cmds := srv.Commands(); len(cmds) != 1 {
		t.Errorf("commands %q, want one print", cmds)
	}
	want := map[string]string{
		"/storage-pool/k8s/pvc-a.img.bak": "recovery1",
		spec("pvc-a", gib).FilePath:       "pvc-a",
	}
	if !maps.Equal(users, want) {
		t.Errorf("FileUsers = %v, want %v", users, want)
	}

	// A disk entry without a size is no Disk the client can vouch for,
	// but its file is still in use.
	srv.Inject(rdstest.AnswerNth(`^/disk print detail$`, 1, " 0  type=raid slot=\"odd\" file-path=/storage-pool/odd.img\r\n", 0))
	users, err = c.FileUsers(ctx)
	if err != nil || users["/storage-pool/odd.img"] != "odd" {
		t.Errorf("FileUsers with an entry of unknown shape = %v, %v; want odd's file", users, err)
	}
	// Output that is not a detail listing fails.
	srv.Inject(rdstest.AnswerNth(`^/disk print detail$`, 1, "garbage without an entry number\r\n", 0))
	if got, err := c.FileUsers(ctx); !errors.Is(err, rdsclient.ErrUnexpectedOutput) {
		t.Errorf("FileUsers of unparsable output = %v, %v; want ErrUnexpectedOutput", got, err)
	}
}
