package rdsclient_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/srvlab/rds-csi/rdsclient"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

func Example() {
	// A fake RDS stands in for the device; with a real one, build the
	// Config from the user's key and the device's pinned host key.
	srv, err := rdstest.NewServer()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := rdsclient.Dial(ctx, srv.Addr(), srv.ClientConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	d, err := c.CreateDisk(ctx, rdsclient.DiskSpec{
		Slot:      "pvc-example",
		FilePath:  "/storage-pool/k8s/pvc-example.img",
		SizeBytes: 1536 << 20, // 1.5 GiB
		Export:    &rdsclient.NVMeExport{NQN: "nqn.2000-02.com.mikrotik:pvc-example"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Slot, d.SizeBytes, d.Export.Port, d.Export.NQN)

	got, err := c.Disk(ctx, "pvc-example")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.FilePath)

	_, err = c.Disk(ctx, "pvc-missing")
	fmt.Println(errors.Is(err, rdsclient.ErrNotFound))

	_, err = c.Disk(ctx, `pvc-1"; /system reboot`)
	fmt.Println(errors.Is(err, rdsclient.ErrInvalid))
	// Output:
	// pvc-example 1610612736 4420 nqn.2000-02.com.mikrotik:pvc-example
	// /storage-pool/k8s/pvc-example.img
	// true
	// true
}

// A device that presents a host key other than the pinned one is refused
// with a *HostKeyError naming both fingerprints. It is not ErrUnavailable:
// retrying cannot help, the pin must be updated.
func ExampleHostKeyError() {
	srv, err := rdstest.NewServer()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	stale, err := ssh.NewPublicKey(pub) // say, the key before the device was re-keyed
	if err != nil {
		log.Fatal(err)
	}
	cfg := srv.ClientConfig()
	cfg.HostKeyCallback = rdsclient.FixedHostKey(stale)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = rdsclient.Dial(ctx, srv.Addr(), cfg)
	var he *rdsclient.HostKeyError
	if errors.As(err, &he) {
		fmt.Println(he.KeyType, he.Fingerprint == ssh.FingerprintSHA256(srv.HostKey()), he.Want[0] == ssh.FingerprintSHA256(stale))
	}
	fmt.Println(errors.Is(err, rdsclient.ErrHostKey), errors.Is(err, rdsclient.ErrUnavailable))
	// Output:
	// ssh-ed25519 true true
	// true false
}

func ExampleHostKeyFromLine() {
	// The line comes from the RDS: /ip ssh export-host-key, or the
	// known_hosts entry of a trusted machine.
	srv, err := rdstest.NewServer()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	line := "rds.example " + authorizedKey(srv)

	cb, err := rdsclient.HostKeyFromLine(line)
	if err != nil {
		log.Fatal(err)
	}
	cfg := srv.ClientConfig()
	cfg.HostKeyCallback = cb
	c, err := rdsclient.Dial(context.Background(), srv.Addr(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	name, err := c.Identity(context.Background())
	fmt.Println(name, err)
	// Output: rds <nil>
}

func ExampleRoundUpSize() {
	fmt.Println(rdsclient.RoundUpSize(1), rdsclient.RoundUpSize(3<<29), rdsclient.RoundUpSize(3<<29+1))
	// Output: 1048576 1610612736 1611661312
}
