package routeros

import "errors"

var (
	// ErrInvalidValue is wrapped by every validator and by Quote when a
	// value must not reach the console.
	ErrInvalidValue = errors.New("routeros: invalid value")
	// ErrMalformed is wrapped when console output, or a value in it, does
	// not have the expected shape.
	ErrMalformed = errors.New("routeros: malformed output")
	// ErrTruncated is wrapped when console output ends in the middle of an
	// item, e.g. inside a quoted value; the session was probably cut.
	ErrTruncated = errors.New("routeros: truncated output")
)

// clip shortens s for error messages so that huge inputs do not end up
// in logs whole.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
