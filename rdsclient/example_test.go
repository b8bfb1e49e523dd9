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

// A caller that knows a disk by its slot reads it first and hands the
// Disk it read to ResizeDisk, which then sends the set and reads the disk
// back: a set whose [find] matches nothing is silent too, so only the
// read shows that the disk exists and has grown.
func ExampleClient_ResizeDisk() {
	srv, c, ctx, done := exampleRDS()
	defer done()
	if _, err := c.CreateDisk(ctx, rdsclient.DiskSpec{
		Slot: "pvc-grow", FilePath: "/storage-pool/k8s/pvc-grow.img", SizeBytes: 1 << 30,
	}); err != nil {
		log.Fatal(err)
	}

	d, err := c.Disk(ctx, "pvc-grow")
	if err != nil {
		log.Fatal(err)
	}
	srv.ResetCommands()
	d, err = c.ResizeDisk(ctx, d, 3<<29+1) // rounded up to a MiB
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.SizeBytes)
	fmt.Println(srv.Commands())

	// Shrinking is refused before anything is sent.
	_, err = c.ResizeDisk(ctx, d, 1<<30)
	fmt.Println(errors.Is(err, rdsclient.ErrInvalid))
	// Output:
	// 1611661312
	// [/disk set [find slot="pvc-grow"] file-size=1537M /disk print detail where slot="pvc-grow"]
	// true
}

// CopyDisk copies a disk as read. A snapshot (no size in the spec) gets
// the source's size on the device, read back after the copy. A source
// that went away after it was read fails on the device.
func ExampleClient_CopyDisk() {
	_, c, ctx, done := exampleRDS()
	defer done()
	if _, err := c.CreateDisk(ctx, rdsclient.DiskSpec{
		Slot: "pvc-src", FilePath: "/storage-pool/k8s/pvc-src.img", SizeBytes: 1 << 30,
	}); err != nil {
		log.Fatal(err)
	}

	src, err := c.Disk(ctx, "pvc-src")
	if err != nil {
		log.Fatal(err)
	}
	snap, err := c.CopyDisk(ctx, src, rdsclient.DiskSpec{Slot: "snap-1", FilePath: "/storage-pool/k8s/snap-1.img"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(snap.Slot, snap.SizeBytes, snap.FilePath)

	if err := c.DeleteDisk(ctx, src); err != nil {
		log.Fatal(err)
	}
	_, err = c.CopyDisk(ctx, src, rdsclient.DiskSpec{Slot: "snap-2", FilePath: "/storage-pool/k8s/snap-2.img"})
	fmt.Println(errors.Is(err, rdsclient.ErrNotFound))
	// Output:
	// snap-1 1073741824 /storage-pool/k8s/snap-1.img
	// true
}

// DeleteDisk removes a disk as read, reads it back to see it gone, then
// removes its backing file. A disk that is gone already is not an error;
// reading it first says ErrNotFound.
func ExampleClient_DeleteDisk() {
	srv, c, ctx, done := exampleRDS()
	defer done()
	if _, err := c.CreateDisk(ctx, rdsclient.DiskSpec{
		Slot: "pvc-old", FilePath: "/storage-pool/k8s/pvc-old.img", SizeBytes: 1 << 30,
	}); err != nil {
		log.Fatal(err)
	}

	d, err := c.Disk(ctx, "pvc-old")
	if err != nil {
		log.Fatal(err)
	}
	srv.ResetCommands()
	fmt.Println(c.DeleteDisk(ctx, d))
	for _, cmd := range srv.Commands() {
		fmt.Println(cmd)
	}
	fmt.Println(c.DeleteDisk(ctx, d))
	_, err = c.Disk(ctx, "pvc-old")
	fmt.Println(errors.Is(err, rdsclient.ErrNotFound))
	// Output:
	// <nil>
	// /disk remove [find slot="pvc-old"]
	// /disk print detail where slot="pvc-old"
	// /file remove [find name="storage-pool/k8s/pvc-old.img"]
	// <nil>
	// true
}

// Reads by slot and of pools are coalesced by default: while as many
// prints run as half the sessions allow, further reads wait and share the
// next. A lone read sends what it would without, and WithCoalescedReads(1)
// turns coalescing off.
func ExampleWithCoalescedReads() {
	srv, c, ctx, done := exampleRDS(rdsclient.WithCoalescedReads(1))
	defer done()

	_, err := c.Disk(ctx, "pvc-a")
	fmt.Println(errors.Is(err, rdsclient.ErrNotFound))
	capacity, err := c.Capacity(ctx, "storage-pool")
	fmt.Println(capacity.Pool, err)
	for _, cmd := range srv.Commands() {
		fmt.Println(cmd)
	}
	// Output:
	// true
	// storage-pool <nil>
	// /disk print detail where slot="pvc-a"
	// /disk print detail where mount-point="storage-pool"
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

// exampleRDS starts a fake RDS and a client of it for the examples below
// the package example; done closes both.
func exampleRDS(opts ...rdsclient.Option) (*rdstest.Server, *rdsclient.Client, context.Context, func()) {
	srv, err := rdstest.NewServer()
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	c, err := rdsclient.Dial(ctx, srv.Addr(), srv.ClientConfig(), opts...)
	if err != nil {
		log.Fatal(err)
	}
	return srv, c, ctx, func() {
		c.Close()
		cancel()
		srv.Close()
	}
}
