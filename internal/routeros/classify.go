package routeros

import (
	"fmt"
	"strings"
)

// Class is the kind of result a RouterOS command produced.
type Class int

// Result classes, from Classify.
const (
	ClassOK       Class = iota // no failure text, exit status 0
	ClassNotFound              // the target item does not exist
	ClassExists                // an item with this name, slot or file already exists
	ClassNoSpace               // the pool has not enough free space
	ClassInvalid               // the command or an argument was rejected
	ClassInUse                 // the item is in use (e.g. a connected disk)
	ClassOther                 // any other failure
)

var classNames = [...]string{"ok", "not_found", "exists", "no_space", "invalid", "in_use", "other"}

// String returns a short snake_case name, suitable as a metric label.
func (c Class) String() string {
	if c >= 0 && int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// invalidLines start the console's syntax and argument errors, which
// are printed without a "failure:" prefix.
var invalidLines = []string{
	"bad command name",
	"expected end of command",
	"syntax error",
	"expected command name",
	"expected closing",
	"invalid value for argument",
	"input does not match any value of",
	"ambiguous value of",
	"missing value",
}

// reasonClass sorts the text of a failure (what follows "failure:", or a
// bare message) into a class; ok is false when nothing matched.
func reasonClass(r string) (Class, bool) {
	switch {
	case strings.Contains(r, "not enough space"), strings.Contains(r, "no space left"):
		return ClassNoSpace, true
	case strings.Contains(r, "no such item"):
		return ClassNotFound, true
	case strings.Contains(r, "already exist"), strings.Contains(r, "already have"),
		strings.Contains(r, "duplicate"), strings.Contains(r, "file exists"):
		return ClassExists, true
	case strings.Contains(r, "in use"):
		return ClassInUse, true
	case strings.Contains(r, "invalid"), strings.HasPrefix(r, "value of "):
		return ClassInvalid, true
	}
	for _, p := range invalidLines {
		if strings.HasPrefix(r, p) {
			return ClassInvalid, true
		}
	}
	return ClassOther, false
}

// lineClass classifies one trimmed output line. Only lines that start
// with a failure shape count, so that data printed by a successful
// `print` (a comment mentioning "in use", say) is never mistaken for an
// error.
func lineClass(l string) (Class, bool) {
	if r, ok := strings.CutPrefix(l, "failure:"); ok {
		c, _ := reasonClass(strings.TrimSpace(r))
		return c, true
	}
	for _, p := range []string{"no such item", "not enough space", "disk is in use",
		"item with this name already exists", "already exists"} {
		if strings.HasPrefix(l, p) {
			return reasonClass(l)
		}
	}
	for _, p := range invalidLines {
		if strings.HasPrefix(l, p) {
			return ClassInvalid, true
		}
	}
	return ClassOK, false
}

// Classify looks at a command's stdout and stderr together with its exit
// status, and returns the result class plus the line that shows the
// failure ("failure: not enough space"). RouterOS prints failures as text
// on either stream, and its exit status alone is not reliable. A specific
// class (not found, exists, ...) wins over ClassOther; the first matching
// line of stderr, then stdout, is reported. Without failure text, a
// non-zero exit status is ClassOther and a zero one ClassOK.
func Classify(stdout, stderr string, exitStatus int) (Class, string) {
	var (
		otherLine string
		haveOther bool
		firstLine string
	)
	for _, stream := range []string{stderr, stdout} {
		for _, raw := range strings.Split(clean(stream), "\n") {
			l := strings.TrimSpace(raw)
			if l == "" {
				continue
			}
			if firstLine == "" {
				firstLine = l
			}
			c, ok := lineClass(l)
			if !ok {
				continue
			}
			if c != ClassOther {
				return c, l
			}
			if !haveOther {
				otherLine, haveOther = l, true
			}
		}
	}
	switch {
	case haveOther:
		return ClassOther, otherLine
	case exitStatus != 0 && firstLine != "":
		return ClassOther, firstLine
	case exitStatus != 0:
		return ClassOther, fmt.Sprintf("exit status %d", exitStatus)
	}
	return ClassOK, ""
}
