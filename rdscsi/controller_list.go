package rdscsi

import (
	"context"
	"encoding/base64"
	"sort"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/rdsclient"
)

// ListVolumes implements csi.ControllerServer.
func (c *ControllerServer) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	resp, err := c.listVolumes(ctx, req)
	if err != nil {
		return nil, Status(err)
	}
	return resp, nil
}

func (c *ControllerServer) listVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	disks, next, err := c.pageOfVolumes(ctx, req.GetMaxEntries(), req.GetStartingToken())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListVolumesResponse{NextToken: next}
	for _, d := range disks {
		f, _ := parseFilePath(d.FilePath)
		e := &csi.ListVolumesResponse_Entry{Volume: &csi.Volume{
			VolumeId:           d.Slot,
			CapacityBytes:      d.SizeBytes,
			ContentSource:      contentSourceOf(f.source),
			AccessibleTopology: c.accessibleTopology(),
		}}
		if c.attachments != nil {
			a, _ := c.attachments.Get(d.Slot)
			e.Status = &csi.ListVolumesResponse_VolumeStatus{PublishedNodeIds: a.Nodes}
		}
		resp.Entries = append(resp.Entries, e)
	}
	return resp, nil
}

// pageOfVolumes lists our volumes sorted by ID from the token on.
func (c *ControllerServer) pageOfVolumes(ctx context.Context, max int32, token string) ([]rdsclient.Disk, string, error) {
	if max < 0 {
		return nil, "", errorf(ErrInvalidArgument, "max_entries %d is negative", max)
	}
	start, err := decodeToken(tokenVolumes, token)
	if err != nil {
		return nil, "", err
	}
	all, err := c.disks.Disks(ctx, volumePrefix)
	if err != nil {
		return nil, "", err
	}
	var ours []rdsclient.Disk
	for _, d := range all {
		if f, ok := parseFilePath(d.FilePath); ok && d.Type == "file" && f.id == d.Slot && IsVolumeID(d.Slot) {
			ours = append(ours, d)
		}
	}
	page, next := paginate(ours, func(d rdsclient.Disk) string { return d.Slot }, start, max)
	return page, encodeToken(tokenVolumes, next), nil
}

// paginate sorts items by key and returns up to max of them whose key is
// at least start, and the key of the first item left out ("" if none).
// Resuming from a key rather than an offset keeps pages right when items
// before the token are added or deleted.
func paginate[T any](items []T, key func(T) string, start string, max int32) ([]T, string) {
	sort.Slice(items, func(i, j int) bool { return key(items[i]) < key(items[j]) })
	i := sort.Search(len(items), func(i int) bool { return key(items[i]) >= start })
	items = items[i:]
	if max > 0 && len(items) > int(max) {
		return items[:max], key(items[max])
	}
	return items, ""
}

// Pagination tokens name the first item of the next page. They are opaque
// to the CO, carry their kind so that a token of one list is refused by
// another, and are validated before use.
const (
	tokenVolumes   = "v"
	tokenSnapshots = "s"
	tokenHealth    = "h"
	tokenVersion   = "1"
)

func encodeToken(kind, next string) string {
	if next == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(tokenVersion + kind + ":" + next))
}

// decodeToken returns the key a token resumes from; "" for no token. A
// token this package did not issue is ErrAborted, as the spec asks.
func decodeToken(kind, token string) (string, error) {
	if token == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	prefix := tokenVersion + kind + ":"
	if err != nil || !strings.HasPrefix(string(b), prefix) {
		return "", errorf(ErrAborted, "invalid starting token %q", clipInput(token))
	}
	key := string(b[len(prefix):])
	valid := IsVolumeID
	if kind == tokenSnapshots {
		valid = IsSnapshotID
	}
	if !valid(key) {
		return "", errorf(ErrAborted, "invalid starting token %q", clipInput(token))
	}
	return key, nil
}
