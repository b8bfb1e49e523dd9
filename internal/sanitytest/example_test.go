package sanitytest_test

import (
	"fmt"

	"github.com/onsi/ginkgo/v2/types"

	"github.com/srvlab/rds-csi/internal/sanitytest"
)

// Account says what keeps a csi-sanity run from being clean: here a skip
// nobody listed, and a listed skip that no longer happens.
func ExampleAccount() {
	expected := map[string]string{
		"GroupController Service": "no group snapshots",
		"ModifyVolume":            "no mutable parameters",
	}
	reports := []types.SpecReport{
		{ContainerHierarchyTexts: []string{"Controller Service", "CreateVolume"}, LeafNodeText: "should create a volume", State: types.SpecStatePassed},
		{ContainerHierarchyTexts: []string{"GroupController Service"}, LeafNodeText: "should create a group snapshot", State: types.SpecStateSkipped},
		{ContainerHierarchyTexts: []string{"Node Service"}, LeafNodeText: "should expand", State: types.SpecStateSkipped,
			Failure: types.Failure{Message: "EXPAND_VOLUME not advertised"}},
	}
	a := sanitytest.Account(reports, expected)
	fmt.Println(a.States)
	fmt.Println(a.Skipped)
	for _, p := range a.Problems {
		fmt.Println(p)
	}
	// Output:
	// map[passed:1 skipped:2]
	// map[GroupController Service:1]
	// unexpected skip: Node Service should expand: EXPAND_VOLUME not advertised
	// listed skip "ModifyVolume" did not happen: remove it from the list
}
