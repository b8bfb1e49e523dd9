package rdscsi_test

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/srvlab/rds-csi/rdscsi"
)

func TestListenUnix(t *testing.T) {
	dir := ctrlTestShortDir(t)
	sock := filepath.Join(dir, "csi.sock")

	l, err := rdscsi.Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket %v %v", fi, err)
	}
	if l.Addr().String() != sock {
		t.Errorf("addr %q", l.Addr())
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}

	// A second server must not steal a live socket.
	if _, err := rdscsi.Listen("unix://" + sock); !errors.Is(err, rdscsi.ErrFailedPrecondition) {
		t.Errorf("second listen on a live socket: %v", err)
	}
	l.Close()
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket not removed on close: %v", err)
	}

	// A stale socket (its server died without cleaning up) is replaced.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("stale socket missing: %v", err)
	}
	l, err = rdscsi.Listen("unix:"+sock, rdscsi.WithSocketMode(0o600))
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	if fi, _ := os.Lstat(sock); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	l.Close()

	// Anything that is not a socket is left alone.
	if err := os.WriteFile(sock, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := rdscsi.Listen("unix://" + sock); !errors.Is(err, rdscsi.ErrFailedPrecondition) {
		t.Errorf("listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(sock); string(b) != "precious" {
		t.Error("regular file was touched")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary entries left: %v", ents)
	}
}

func TestListenTCPAndBadEndpoints(t *testing.T) {
	l, err := rdscsi.Listen("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Addr().(*net.TCPAddr); !ok {
		t.Errorf("addr %v", l.Addr())
	}
	l.Close()
	for _, ep := range []string{"", "/tmp/x.sock", "unix://relative.sock", "http://x", "tcp://", "tcp://host/path", "unix:"} {
		if _, err := rdscsi.Listen(ep); !errors.Is(err, rdscsi.ErrInvalidArgument) {
			t.Errorf("%q: %v", ep, err)
		}
	}
}
