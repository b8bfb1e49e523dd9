package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, errStoppedDuringStartup) {
		// Asked to stop while starting (waiting for the state file's lock
		// or the RDS): stopping is what was asked, not a failure.
		fmt.Fprintln(os.Stderr, "rds-csi-plugin:", err)
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rds-csi-plugin:", err)
		os.Exit(1)
	}
}
