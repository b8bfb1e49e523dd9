package rdscsi

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/srvlab/rds-csi/rdsclient"
)

// GetCapacity implements csi.ControllerServer.
func (c *ControllerServer) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	resp, err := c.capacity(ctx, req)
	if err != nil {
		return nil, Status(err)
	}
	return resp, nil
}

func (c *ControllerServer) capacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	p, err := c.opts.parseVolumeParams(req.GetParameters())
	if err != nil {
		return nil, err
	}
	for _, vc := range req.GetVolumeCapabilities() {
		if _, err := parseCapability(vc); err != nil {
			// No volume with these capabilities fits anywhere.
			return &csi.GetCapacityResponse{}, nil
		}
	}
	if t := req.GetAccessibleTopology(); t != nil && !c.topologyMatches(t) {
		return &csi.GetCapacityResponse{}, nil
	}
	capy, err := c.disks.Capacity(ctx, p.pool())
	if err != nil {
		return nil, err
	}
	return &csi.GetCapacityResponse{
		AvailableCapacity: capy.FreeBytes,
		MinimumVolumeSize: wrapperspb.Int64(rdsclient.MiB),
	}, nil
}
