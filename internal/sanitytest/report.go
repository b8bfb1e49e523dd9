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
// stage and mount, are skipped for that reason; controller specs use the
// node only for NodeGetInfo, which works without devices. Call Claim
// first.
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

// Account matches reports against expected (ExpectedSkips). With
// nodeSkipped, skipped Node Service specs are accounted for by Run's
// nodeSkip reason rather than by the list.
func Account(reports []types.SpecReport, expected map[string]string, nodeSkipped bool) Accounting {
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
			if nodeSkipped && strings.Contains(name, nodeService) {
				continue
			}
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

// Check accounts for every spec of a run (see Account) against
// ExpectedSkips, fails t for each problem, and logs each expected skip
// with its count and reason.
func Check(t testing.TB, reports []types.SpecReport, nodeSkipped bool) Accounting {
	t.Helper()
	expected := ExpectedSkips(!nodeSkipped)
	a := Account(reports, expected, nodeSkipped)
	for _, p := range a.Problems {
		t.Error(p)
	}
	for _, k := range slices.Sorted(maps.Keys(expected)) {
		t.Logf("skipped %2d x %q: %s", a.Skipped[k], k, expected[k])
	}
	if len(reports) == 0 {
		t.Error("csi-sanity ran no spec")
	}
	return a
}
