// Package sanitytest is what the csi-sanity tests of rds-csi share: the
// specs csi-sanity is expected to skip for this driver and why, the check
// of a Ginkgo run against that list, csi-sanity's configuration with the
// driver's settings, IDs of the driver's shape, and the guards around
// Ginkgo's one RunSpecs per process.
//
// It is used only by tests (rdscsi runs csi-sanity against servers built in
// the test, examples/rds-csi-plugin against the built plugin binary); one
// list of expected skips keeps the two from drifting apart.
//
// A run is judged in two parts (Split): the controller part (Controller,
// Identity and the other specs that need no devices), which always runs,
// and the node part (Node Service specs, which stage on loop devices),
// which a test skips with the reason where root or loop devices are
// missing (NodeUnavailable). Each part has its own list of expected skips;
// a listed skip is a substring of a spec's full text. A part is clean when
// every spec passed, or was skipped by a listed entry, or is csi-test's
// own disabled spec; and every listed entry skipped at least one spec, so
// the list cannot rot when the driver gains a capability.
package sanitytest
