package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
)

// options of one lifecycle run.
type options struct {
	metricsURL  string
	nodeID      string
	block       bool
	fsType      string
	sizeMiB     int64
	name        string
	workDir     string
	stepTimeout time.Duration
}

// lifecycle drives one volume from creation to deletion, printing every
// step and, with a metrics URL, the rds_csi_* gauges after it. When a step
// fails, the steps already done are undone (best effort) before the error
// is returned.
func lifecycle(ctx context.Context, conn grpc.ClientConnInterface, o options, out io.Writer) (err error) {
	ids := csi.NewIdentityClient(conn)
	ctrl := csi.NewControllerClient(conn)
	node := csi.NewNodeClient(conn)
	r := &runner{ctx: ctx, out: out, o: o}

	var undo []func() error
	defer func() {
		if err == nil {
			return
		}
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i](); uerr != nil {
				fmt.Fprintf(out, "  cleanup failed: %v\n", uerr)
			}
		}
	}()

	var info *csi.GetPluginInfoResponse
	if err := r.step("GetPluginInfo", func(ctx context.Context) (err error) {
		info, err = ids.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
		if err == nil {
			r.printf("plugin %s %s", info.GetName(), info.GetVendorVersion())
		}
		return err
	}); err != nil {
		return err
	}

	nodeCaps := map[csi.NodeServiceCapability_RPC_Type]bool{}
	if err := r.step("NodeGetInfo", func(ctx context.Context) error {
		ni, err := node.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
		if err != nil {
			return err
		}
		if o.nodeID == "" {
			o.nodeID = ni.GetNodeId()
		}
		nc, err := node.NodeGetCapabilities(ctx, &csi.NodeGetCapabilitiesRequest{})
		if err != nil {
			return err
		}
		for _, c := range nc.GetCapabilities() {
			nodeCaps[c.GetRpc().GetType()] = true
		}
		r.printf("node %s, max volumes %d", ni.GetNodeId(), ni.GetMaxVolumesPerNode())
		return nil
	}); err != nil {
		return err
	}
	stage := nodeCaps[csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME]

	var publish bool
	if err := r.step("ControllerGetCapabilities", func(ctx context.Context) error {
		cc, err := ctrl.ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{})
		if err != nil {
			return err
		}
		publish = slices.ContainsFunc(cc.GetCapabilities(), func(c *csi.ControllerServiceCapability) bool {
			return c.GetRpc().GetType() == csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME
		})
		return nil
	}); err != nil {
		return err
	}

	capability := &csi.VolumeCapability{
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	if o.block {
		capability.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	} else {
		capability.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: o.fsType}}
	}
	caps := []*csi.VolumeCapability{capability}

	var vol *csi.Volume
	if err := r.step("CreateVolume", func(ctx context.Context) error {
		resp, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{
			Name:               o.name,
			CapacityRange:      &csi.CapacityRange{RequiredBytes: o.sizeMiB << 20},
			VolumeCapabilities: caps,
		})
		if err != nil {
			return err
		}
		vol = resp.GetVolume()
		r.printf("volume %s, %d bytes, context %v", vol.GetVolumeId(), vol.GetCapacityBytes(), vol.GetVolumeContext())
		return nil
	}); err != nil {
		return err
	}
	volumeID := vol.GetVolumeId()
	undo = append(undo, func() error {
		return r.quiet(func(ctx context.Context) error {
			_, err := ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: volumeID})
			return err
		})
	})

	var publishContext map[string]string
	if publish {
		if err := r.step("ControllerPublishVolume", func(ctx context.Context) error {
			resp, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
				VolumeId:         volumeID,
				NodeId:           o.nodeID,
				VolumeCapability: capability,
				VolumeContext:    vol.GetVolumeContext(),
			})
			if err != nil {
				return err
			}
			publishContext = resp.GetPublishContext()
			r.printf("published to node %s, context %v", o.nodeID, publishContext)
			return nil
		}); err != nil {
			return err
		}
		undo = append(undo, func() error {
			return r.quiet(func(ctx context.Context) error {
				_, err := ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: volumeID, NodeId: o.nodeID})
				return err
			})
		})
	}

	stagingPath := filepath.Join(o.workDir, "staging")
	targetPath := filepath.Join(o.workDir, "target")
	if stage {
		if err := os.MkdirAll(stagingPath, 0o750); err != nil {
			return err
		}
		if err := r.step("NodeStageVolume", func(ctx context.Context) error {
			_, err := node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{
				VolumeId:          volumeID,
				PublishContext:    publishContext,
				StagingTargetPath: stagingPath,
				VolumeCapability:  capability,
				VolumeContext:     vol.GetVolumeContext(),
			})
			if err == nil {
				r.printf("staged at %s", stagingPath)
			}
			return err
		}); err != nil {
			return err
		}
		undo = append(undo, func() error {
			return r.quiet(func(ctx context.Context) error {
				_, err := node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: volumeID, StagingTargetPath: stagingPath})
				return err
			})
		})
	} else {
		stagingPath = ""
	}

	if err := r.step("NodePublishVolume", func(ctx context.Context) error {
		_, err := node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
			VolumeId:          volumeID,
			PublishContext:    publishContext,
			StagingTargetPath: stagingPath,
			TargetPath:        targetPath,
			VolumeCapability:  capability,
			VolumeContext:     vol.GetVolumeContext(),
		})
		if err == nil {
			r.printf("published at %s", targetPath)
		}
		return err
	}); err != nil {
		return err
	}
	undo = append(undo, func() error {
		return r.quiet(func(ctx context.Context) error {
			_, err := node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: volumeID, TargetPath: targetPath})
			return err
		})
	})

	if err := r.step("write and read back", func(context.Context) error {
		return writeAndVerify(r, targetPath, o.block)
	}); err != nil {
		return err
	}

	if nodeCaps[csi.NodeServiceCapability_RPC_GET_VOLUME_STATS] {
		if err := r.step("NodeGetVolumeStats", func(ctx context.Context) error {
			st, err := node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: volumeID, VolumePath: targetPath})
			if err != nil {
				return err
			}
			for _, u := range st.GetUsage() {
				r.printf("%s: total %d, used %d, available %d", u.GetUnit(), u.GetTotal(), u.GetUsed(), u.GetAvailable())
			}
			return nil
		}); err != nil {
			return err
		}
	}

	// From here on each step is its own undo: drop it before running it.
	pop := func() { undo = undo[:len(undo)-1] }
	pop()
	if err := r.step("NodeUnpublishVolume", func(ctx context.Context) error {
		_, err := node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: volumeID, TargetPath: targetPath})
		return err
	}); err != nil {
		return err
	}
	if stage {
		pop()
		if err := r.step("NodeUnstageVolume", func(ctx context.Context) error {
			_, err := node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: volumeID, StagingTargetPath: stagingPath})
			return err
		}); err != nil {
			return err
		}
	}
	if publish {
		pop()
		if err := r.step("ControllerUnpublishVolume", func(ctx context.Context) error {
			_, err := ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: volumeID, NodeId: o.nodeID})
			return err
		}); err != nil {
			return err
		}
	}
	pop()
	if err := r.step("DeleteVolume", func(ctx context.Context) error {
		_, err := ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: volumeID})
		return err
	}); err != nil {
		return err
	}
	fmt.Fprintln(out, "lifecycle complete")
	return nil
}

// runner prints steps and metrics.
type runner struct {
	ctx context.Context
	out io.Writer
	o   options
	n   int
}

func (r *runner) printf(format string, args ...any) {
	fmt.Fprintf(r.out, "  "+format+"\n", args...)
}

// step runs one step with the step timeout, prints its outcome and the
// metrics after it.
func (r *runner) step(name string, f func(ctx context.Context) error) error {
	r.n++
	fmt.Fprintf(r.out, "%2d. %s\n", r.n, name)
	start := time.Now()
	if err := r.quiet(f); err != nil {
		fmt.Fprintf(r.out, "  FAILED after %v: %v\n", time.Since(start).Round(time.Millisecond), err)
		return fmt.Errorf("%s: %w", name, err)
	}
	fmt.Fprintf(r.out, "  ok (%v)\n", time.Since(start).Round(time.Millisecond))
	if r.o.metricsURL != "" {
		ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
		defer cancel()
		gauges, err := scrapeGauges(ctx, r.o.metricsURL)
		if err != nil {
			r.printf("metrics: %v", err)
		}
		for _, g := range gauges {
			r.printf("%s", g)
		}
	}
	return nil
}

// quiet runs f with the step timeout, printing nothing.
func (r *runner) quiet(f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(r.ctx, r.o.stepTimeout)
	defer cancel()
	return f(ctx)
}

// writeAndVerify writes a small file (mount) or the first 4 KiB of the
// device (block), syncs, and reads it back.
func writeAndVerify(r *runner, targetPath string, block bool) error {
	payload := bytes.Repeat([]byte("rds-csi lifecycle\n"), 228)[:4096]
	path := targetPath
	flags := os.O_RDWR
	if !block {
		path = filepath.Join(targetPath, "hello.txt")
		flags |= os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(payload, 0); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	got := make([]byte, len(payload))
	if _, err := f.ReadAt(got, 0); err != nil {
		return err
	}
	if !bytes.Equal(got, payload) {
		return errors.New("data read back differs from data written")
	}
	r.printf("wrote and read back %d bytes at %s", len(payload), path)
	return nil
}
