package metrics

import (
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// TestLabelSetsMatchUpstream keeps the fixed label sets in step with the
// CSI spec and gRPC, so a real method or code is never reported as "other".
func TestLabelSetsMatchUpstream(t *testing.T) {
	var methods []string
	for _, sd := range []grpc.ServiceDesc{
		csi.Identity_ServiceDesc, csi.Controller_ServiceDesc, csi.GroupController_ServiceDesc,
		csi.SnapshotMetadata_ServiceDesc, csi.Node_ServiceDesc,
	} {
		for _, m := range sd.Methods {
			methods = append(methods, m.MethodName)
		}
		for _, s := range sd.Streams {
			methods = append(methods, s.StreamName)
		}
	}
	slices.Sort(methods)
	ours := slices.Sorted(slices.Values(csiMethods))
	if !slices.Equal(methods, ours) {
		t.Errorf("CSI methods differ:\nspec: %v\nours: %v", methods, ours)
	}

	var names []string
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		names = append(names, c.String())
	}
	if !slices.Equal(names, grpcCodes) {
		t.Errorf("gRPC code names differ:\ngrpc: %v\nours: %v", names, grpcCodes)
	}
}
