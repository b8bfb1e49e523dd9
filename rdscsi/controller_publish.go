package rdscsi

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/attach"
)

// ControllerPublishVolume implements csi.ControllerServer.
func (c *ControllerServer) ControllerPublishVolume(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	pc, err := c.publish(ctx, req)
	if err != nil {
		return nil, Status(err)
	}
	return &csi.ControllerPublishVolumeResponse{PublishContext: pc}, nil
}

func (c *ControllerServer) publish(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (map[string]string, error) {
	vid, nid := req.GetVolumeId(), req.GetNodeId()
	switch {
	case vid == "":
		return nil, errorf(ErrInvalidArgument, "volume ID is required")
	case nid == "":
		return nil, errorf(ErrInvalidArgument, "node ID is required")
	case req.GetVolumeCapability() == nil:
		return nil, errorf(ErrInvalidArgument, "volume capability is required")
	case req.GetReadonly():
		// PUBLISH_READONLY is not advertised, so a CO must send false;
		// refused rather than ignored, so nobody gets write access they
		// did not ask for.
		return nil, errorf(ErrInvalidArgument, "readonly publish is not supported; use a read-only access mode or a read-only NodePublishVolume")
	}
	vc, err := parseCapability(req.GetVolumeCapability())
	if err != nil {
		return nil, err
	}
	if c.attachments == nil {
		return nil, errorf(ErrUnimplemented, "ControllerPublishVolume: no attachment store configured")
	}
	p, err := c.opts.parseVolumeContext(req.GetVolumeContext())
	if err != nil {
		return nil, err
	}
	if err := p.requireAddress(); err != nil {
		return nil, err
	}
	d, err := c.lookupVolume(ctx, vid)
	if err != nil {
		return nil, err
	}
	if d.Export == nil {
		return nil, errorf(ErrFailedPrecondition, "volume %s is not exported over NVMe/TCP", vid)
	}
	exists, err := c.opts.nodeLookup(ctx, nid)
	if err != nil {
		return nil, errorf(ErrUnavailable, "node lookup %q: %v", clipInput(nid), err)
	}
	if !exists {
		return nil, errorf(ErrNotFound, "node %q", clipInput(nid))
	}

	mode := vc.attachment
	if a, ok := c.attachments.Get(vid); ok && slices.Contains(a.Nodes, nid) && a.Mode != mode {
		// Refused here, before the Attachments see it, so it is counted
		// here; refusals by the Attachments are reported by their own
		// observer.
		c.opts.recorder.AttachmentConflict(ctx)
		return nil, errorf(ErrAlreadyExists, "volume %s is published to node %q as %s, requested %s", vid, nid, a.Mode, mode)
	}
	if c.opts.maxVolumes > 0 {
		unlock, err := c.nodeLocks.Lock(ctx, nid)
		if err != nil {
			return nil, err
		}
		defer unlock()
		if err := c.checkNodeLimit(vid, nid); err != nil {
			return nil, err
		}
	}
	// Attach errors name the nodes holding the volume, as the spec asks
	// for FailedPrecondition.
	if err := c.attachments.Attach(ctx, attach.Request{VolumeID: vid, NodeID: nid, Mode: mode, MigrationTimeout: p.migrationTimeout}); err != nil {
		return nil, err
	}
	pc := map[string]string{
		ContextNQN:       d.Export.NQN,
		ParamNVMeAddress: p.address,
		ParamNVMePort:    fmt.Sprint(d.Export.Port),
	}
	p.addTunables(pc)
	c.opts.logger.InfoContext(ctx, "volume published", slog.String("volume", vid), slog.String("node", nid))
	return pc, nil
}

// checkNodeLimit refuses a new publish to a node at its volume limit. A
// volume already published there is a retry and always passes.
func (c *ControllerServer) checkNodeLimit(vid, nid string) error {
	if a, ok := c.attachments.Get(vid); ok && slices.Contains(a.Nodes, nid) {
		return nil
	}
	if n := len(c.attachments.(NodeAttachments).ListByNode(nid)); int64(n) >= c.opts.maxVolumes {
		return errorf(ErrResourceExhausted, "node %q already has %d volumes published, the limit", clipInput(nid), n)
	}
	return nil
}

// ControllerUnpublishVolume implements csi.ControllerServer.
func (c *ControllerServer) ControllerUnpublishVolume(ctx context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	if err := c.unpublish(ctx, req.GetVolumeId(), req.GetNodeId()); err != nil {
		return nil, Status(err)
	}
	return &csi.ControllerUnpublishVolumeResponse{}, nil
}

func (c *ControllerServer) unpublish(ctx context.Context, vid, nid string) error {
	if vid == "" {
		return errorf(ErrInvalidArgument, "volume ID is required")
	}
	if c.attachments == nil {
		return errorf(ErrUnimplemented, "ControllerUnpublishVolume: no attachment store configured")
	}
	if !IsVolumeID(vid) {
		return nil
	}
	nodes := []string{nid}
	if nid == "" {
		// No node: unpublish from every node, as the spec asks.
		a, _ := c.attachments.Get(vid)
		nodes = a.Nodes
	}
	for _, n := range nodes {
		if err := c.attachments.Detach(ctx, vid, n); err != nil {
			return err
		}
	}
	c.opts.logger.InfoContext(ctx, "volume unpublished", slog.String("volume", vid), slog.String("node", nid))
	return nil
}
