package rdscsi

import (
	"maps"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// accessibleTopology is the topology of a volume in a response: a copy
// each time, so that a caller changing a response cannot change the
// server's.
func (c *ControllerServer) accessibleTopology() []*csi.Topology {
	if len(c.opts.topology) == 0 {
		return nil
	}
	return []*csi.Topology{{Segments: maps.Clone(c.opts.topology)}}
}

// topologyMatches reports whether t is within our topology: every
// segment we declare has the same value in t.
func (c *ControllerServer) topologyMatches(t *csi.Topology) bool {
	for k, v := range c.opts.topology {
		if w, ok := t.GetSegments()[k]; ok && w != v {
			return false
		}
	}
	return true
}

// checkTopology fails when a request requires topologies that cannot
// reach the RDS.
func (c *ControllerServer) checkTopology(tr *csi.TopologyRequirement) error {
	if len(c.opts.topology) == 0 || len(tr.GetRequisite()) == 0 {
		return nil
	}
	for _, t := range tr.GetRequisite() {
		if c.topologyMatches(t) {
			return nil
		}
	}
	return errorf(ErrResourceExhausted, "no requisite topology can reach the RDS")
}
