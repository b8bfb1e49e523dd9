package sanitytest

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	"github.com/onsi/gomega"
	"k8s.io/klog/v2"
)

// nodeService is the container text of csi-sanity's Node Service specs.
const nodeService = "Node Service"

// knownPending is csi-test's own disabled (XIt) spec.
const knownPending = "pagination should detect volumes added between pages"

// Run runs every spec registered in this process (with
// sanity.GinkgoTest) in one RunSpecs, for at most timeout, and returns
// their reports. When nodeSkip is not "", the Node Service specs, which
// stage and mount, are skipped for that reason (judge the node part of
// Split in a subtest skipped with it); controller specs use the node only
// for NodeGetInfo, which works without devices. Call Claim first.
func Run(t ginkgo.GinkgoTestingT, description, nodeSkip string, timeout time.Duration) []types.SpecReport {
	var (
		mu      sync.Mutex
		reports []types.SpecReport
	)
	ginkgo.ReportAfterEach(func(r types.SpecReport) {
		mu.Lock()
		defer mu.Unlock()
		reports = append(reports, r)
	})
	gomega.RegisterFailHandler(ginkgo.Fail)

	suite, reporter := ginkgo.GinkgoConfiguration()
	suite.Timeout = timeout
	suite.FailOnPending = false
	if nodeSkip != "" {
		suite.SkipStrings = append(suite.SkipStrings, nodeService)
	}
	reporter.Succinct = true
	reporter.SilenceSkips = true
	reporter.NoColor = true
	// csi-test logs every cleanup through klog; keep go test output
	// readable.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	ginkgo.RunSpecs(t, description, suite, reporter)
	fmt.Println() // end Ginkgo's progress line

	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(reports)
}

// Accounting is how a csi-sanity run's specs match the expected skips.
type Accounting struct {
	// Problems are the reasons the run is not clean: failed, pending or
	// unexpectedly skipped specs, and listed skips that did not happen.
	Problems []string
	// Skipped counts the specs each listed skip covered.
	Skipped map[string]int
	// States counts the specs by state (passed, skipped, ...).
	States map[string]int
}

// Account matches reports against expected, a list of skips keyed by a
// substring of the spec's full text (see Part).
func Account(reports []types.SpecReport, expected map[string]string) Accounting {
	a := Accounting{Skipped: map[string]int{}, States: map[string]int{}}
	for _, r := range reports {
		name := r.FullText()
		a.States[r.State.String()]++
		switch r.State {
		case types.SpecStatePassed:
		case types.SpecStatePending:
			if !strings.Contains(name, knownPending) {
				a.Problems = append(a.Problems, "pending spec: "+name)
			}
		case types.SpecStateSkipped:
			key := ""
			for k := range expected {
				// The longest match, so that the choice does not
				// depend on map order.
				if strings.Contains(name, k) && len(k) > len(key) {
					key = k
				}
			}
			if key == "" {
				a.Problems = append(a.Problems, fmt.Sprintf("unexpected skip: %s: %s", name, r.Failure.Message))
				continue
			}
			a.Skipped[key]++
		default:
			a.Problems = append(a.Problems, fmt.Sprintf("%s: %s\n%s\n%s", r.State, name, r.Failure.Message, r.Failure.Location))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(expected)) {
		if a.Skipped[k] == 0 {
			a.Problems = append(a.Problems, fmt.Sprintf("listed skip %q did not happen: remove it from the list", k))
		}
	}
	return a
}

// Part is a share of a csi-sanity run that is judged on its own: the
// controller part (Controller, Identity and the other non-node specs),
// which needs no devices and always runs, or the node part (Node Service
// specs), which stages on loop devices and runs only where it can. Judging
// them apart lets a test skip the node part, with the reason, without
// loosening the check of the controller part.
type Part struct {
	Reports  []types.SpecReport
	Expected map[string]string // the skips expected in this part, with the reason
}

// Split divides the reports of one run into its controller and node
// parts, each with its own share of the expected skips: the skips that
// depend on the node's capabilities are expected only in the node part.
// The maps are the caller's.
func Split(reports []types.SpecReport) (controller, node Part) {
	controller.Expected = maps.Clone(controllerSkips)
	node.Expected = maps.Clone(nodeSkips)
	for _, r := range reports {
		if strings.Contains(r.FullText(), nodeService) {
			node.Reports = append(node.Reports, r)
		} else {
			controller.Reports = append(controller.Reports, r)
		}
	}
	return controller, node
}

// Check fails t for every problem Account finds in the part: a failed or
// pending spec, a skip not in Expected, an entry of Expected that skipped
// nothing. A part without specs fails too, for it proves nothing. It logs
// each expected skip with its count and reason, and the specs by state.
func (p Part) Check(t testing.TB) Accounting {
	t.Helper()
	a := Account(p.Reports, p.Expected)
	for _, prob := range a.Problems {
		t.Error(prob)
	}
	for _, k := range slices.Sorted(maps.Keys(p.Expected)) {
		t.Logf("skipped %2d x %q: %s", a.Skipped[k], k, p.Expected[k])
	}
	if len(p.Reports) == 0 {
		t.Error("csi-sanity ran no spec of this part")
	}
	t.Logf("csi-sanity specs: %v", a.States)
	return a
}
