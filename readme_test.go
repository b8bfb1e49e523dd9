package rds_test

import (
	"os"
	"strings"
	"testing"
)

// embedSnippet returns the lines of Example between its embed markers,
// one tab of indentation removed: the wiring the READMEs show.
func embedSnippet(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(src), "\t// embed:begin\n")
	body, _, ok2 := strings.Cut(rest, "\t// embed:end\n")
	if !ok || !ok2 {
		t.Fatal("example_test.go: embed markers not found")
	}
	var b strings.Builder
	for _, line := range strings.SplitAfter(body, "\n") {
		b.WriteString(strings.TrimPrefix(line, "\t"))
	}
	return b.String()
}

// TestREADMEEmbedding keeps the embedding snippets of README.md and
// examples/README.md equal to the body of Example, which compiles and runs:
// a snippet that drifts from working code fails here.
func TestREADMEEmbedding(t *testing.T) {
	want := "```go\n" + embedSnippet(t) + "```\n"
	if strings.Count(want, "\n") < 20 {
		t.Fatalf("snippet too short to be the wiring:\n%s", want)
	}
	for _, f := range []string{"README.md", "examples/README.md"} {
		doc, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(doc), want) {
			t.Errorf("%s does not show Example's wiring; paste this block, exactly:\n%s", f, want)
		}
	}
}
