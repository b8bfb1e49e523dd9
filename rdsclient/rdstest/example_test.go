package rdstest_test

import (
	"fmt"
	"log"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/srvlab/rds-csi/rdsclient/rdstest"
)

func Example() {
	srv, err := rdstest.NewServer()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	cfg := srv.ClientConfig()
	client, err := ssh.Dial("tcp", srv.Addr(), &ssh.ClientConfig{
		User:            cfg.User,
		Auth:            cfg.Auth,
		HostKeyCallback: cfg.HostKeyCallback,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	sess, err := client.NewSession()
	if err != nil {
		log.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Output("/system identity print")
	if err != nil {
		log.Fatal(err)
	}
	// The console ends lines with CRLF.
	fmt.Print(strings.ReplaceAll(string(out), "\r\n", "\n"))
	// Output:
	//   name: rds
}
