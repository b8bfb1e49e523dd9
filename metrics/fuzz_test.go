package metrics

import (
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzLabelValue checks the sanitisers: a value passes through unchanged
// only when it belongs to the label's set, everything else becomes
// "other", and an open label never holds more than its bound.
func FuzzLabelValue(f *testing.F) {
	for _, s := range []string{"disk add", "OK", "10.0.0.1:22", "pvc-1", "", "other", "disk remove [find]", "\xff", "CreateVolume"} {
		f.Add(s)
	}
	logger := slog.New(slog.DiscardHandler)
	command := openLabel(logger, "command", 3, validCommand)
	address := openLabel(logger, "address", 3, validAddress)
	code := fixedLabel(logger, "status", grpcCodes)
	f.Fuzz(func(t *testing.T, s string) {
		if got := code.value(s); got != s && got != otherValue {
			t.Fatalf("code %q -> %q", s, got)
		} else if got == s && !contains(grpcCodes, s) && s != otherValue {
			t.Fatalf("unknown code %q passed through", s)
		}
		for _, l := range []*label{command, address} {
			got := l.value(s)
			if got != s && got != otherValue {
				t.Fatalf("%s %q -> %q", l.name, s, got)
			}
			if got == s && s != otherValue && !l.valid(s) {
				t.Fatalf("%s: malformed %q passed through", l.name, s)
			}
			if !utf8.ValidString(got) || strings.ContainsAny(got, "\n\"=") {
				t.Fatalf("%s: unsafe value %q", l.name, got)
			}
			n := 0
			l.seen.Range(func(any, any) bool { n++; return true })
			if n > l.max {
				t.Fatalf("%s holds %d values, bound %d", l.name, n, l.max)
			}
		}
	})
}

func contains(set []string, s string) bool {
	for _, v := range set {
		if v == s {
			return true
		}
	}
	return false
}
