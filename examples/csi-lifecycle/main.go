package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "csi-lifecycle:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	var o options
	fs := flag.NewFlagSet("csi-lifecycle", flag.ContinueOnError)
	fs.SetOutput(out)
	endpoint := fs.String("endpoint", "unix:///csi/csi.sock", "the plugin's CSI endpoint")
	fs.StringVar(&o.metricsURL, "metrics-url", "", "the plugin's Prometheus endpoint, e.g. http://127.0.0.1:9090/metrics; empty skips metrics")
	fs.StringVar(&o.nodeID, "node-id", "", "node to publish to (default: NodeGetInfo of the plugin)")
	fs.BoolVar(&o.block, "block", false, "use a raw block volume instead of an ext4 mount")
	fs.StringVar(&o.fsType, "fs-type", "ext4", "filesystem of a mount volume")
	fs.Int64Var(&o.sizeMiB, "size-mib", 64, "volume size in MiB")
	fs.StringVar(&o.name, "name", "", "volume name (default: csi-lifecycle-<unix time>)")
	fs.StringVar(&o.workDir, "work-dir", "", "directory for the staging and target paths (default: a temporary directory)")
	fs.DurationVar(&o.stepTimeout, "step-timeout", 2*time.Minute, "deadline of each RPC")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.name == "" {
		o.name = fmt.Sprintf("csi-lifecycle-%d", time.Now().Unix())
	}
	if o.workDir == "" {
		d, err := os.MkdirTemp("", "csi-lifecycle-")
		if err != nil {
			return err
		}
		defer removeWorkDir(d, out)
		o.workDir = d
	}
	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("endpoint %q: %w", *endpoint, err)
	}
	defer conn.Close()
	return lifecycle(ctx, conn, o, out)
}

// removeWorkDir removes the staging and target paths and the directory,
// never recursively: if a failed cleanup left a volume mounted there, a
// recursive removal would delete the volume's files through the mount.
func removeWorkDir(dir string, out io.Writer) {
	for _, p := range []string{filepath.Join(dir, "target"), filepath.Join(dir, "staging"), dir} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(out, "  left %s in place: %v\n", p, err)
		}
	}
}
