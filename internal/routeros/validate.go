package routeros

import (
	"fmt"
	"strconv"
	"strings"
)

// Validation is done byte by byte rather than with regular expressions so
// that the accepted alphabet is explicit and non-ASCII bytes (look-alike
// letters) can never slip through a character class.

func invalid(kind, v, why string) error {
	return fmt.Errorf("%w: %s %q: %s", ErrInvalidValue, kind, clip(v), why)
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func isAlnum(c byte) bool { return isLowerAlnum(c) || c >= 'A' && c <= 'Z' }

// isNameByte is the alphabet of one path component and of pool names.
func isNameByte(c byte) bool { return isAlnum(c) || c == '.' || c == '_' || c == '-' }

// ValidSlot checks a disk slot: [a-z0-9][a-z0-9-]*, at most 63 bytes.
func ValidSlot(s string) error {
	if s == "" || len(s) > 63 {
		return invalid("slot", s, "length must be 1..63 bytes")
	}
	if !isLowerAlnum(s[0]) {
		return invalid("slot", s, "must start with [a-z0-9]")
	}
	for i := 1; i < len(s); i++ {
		if !isLowerAlnum(s[i]) && s[i] != '-' {
			return invalid("slot", s, "must match [a-z0-9][a-z0-9-]*")
		}
	}
	return nil
}

// validComponents checks slash-separated components of a file path.
func validComponents(kind, whole, rel string) error {
	for _, c := range strings.Split(rel, "/") {
		if c == "" {
			return invalid(kind, whole, "empty path component")
		}
		if c == "." || c == ".." {
			return invalid(kind, whole, `"." and ".." components are not allowed`)
		}
		for i := 0; i < len(c); i++ {
			if !isNameByte(c[i]) {
				return invalid(kind, whole, "components must match [A-Za-z0-9._-]+")
			}
		}
	}
	return nil
}

// ValidPath checks an absolute file path such as
// "/storage-pool/k8s/pvc-x.img": components of [A-Za-z0-9._-], none "."
// or "..", no empty component, at most 255 bytes.
func ValidPath(s string) error {
	if s == "" || len(s) > 255 {
		return invalid("file path", s, "length must be 1..255 bytes")
	}
	if s[0] != '/' {
		return invalid("file path", s, "must be absolute")
	}
	return validComponents("file path", s, s[1:])
}

// ValidFileName checks a /file menu name: like ValidPath but without the
// leading slash ("storage-pool/k8s/pvc-x.img").
func ValidFileName(s string) error {
	if s == "" || len(s) > 255 {
		return invalid("file name", s, "length must be 1..255 bytes")
	}
	return validComponents("file name", s, s)
}

// ValidNQN checks an NVMe qualified name of the form
// nqn.yyyy-mm.<reverse domain>:<name>, lower case, at most 223 bytes.
func ValidNQN(s string) error {
	const why = `must match nqn.yyyy-mm.[a-z0-9.-]+:[a-z0-9._:-]+`
	if len(s) > 223 {
		return invalid("nqn", s, "longer than 223 bytes")
	}
	rest, ok := strings.CutPrefix(s, "nqn.")
	if !ok || len(rest) < 8 || !allDigits(rest[:4]) || rest[4] != '-' || !allDigits(rest[5:7]) || rest[7] != '.' {
		return invalid("nqn", s, why)
	}
	domain, name, ok := strings.Cut(rest[8:], ":")
	if !ok || domain == "" || name == "" {
		return invalid("nqn", s, why)
	}
	for i := 0; i < len(domain); i++ {
		if c := domain[i]; !isLowerAlnum(c) && c != '.' && c != '-' {
			return invalid("nqn", s, why)
		}
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isLowerAlnum(c) && c != '.' && c != '_' && c != ':' && c != '-' {
			return invalid("nqn", s, why)
		}
	}
	return nil
}

// ValidPort checks a TCP port number, 1..65535.
func ValidPort(p int) error {
	if p < 1 || p > 65535 {
		return invalid("port", strconv.Itoa(p), "must be 1..65535")
	}
	return nil
}

// ValidPool checks a pool mount point name: [A-Za-z0-9][A-Za-z0-9._-]*,
// at most 63 bytes.
func ValidPool(s string) error {
	if s == "" || len(s) > 63 {
		return invalid("pool", s, "length must be 1..63 bytes")
	}
	if !isAlnum(s[0]) {
		return invalid("pool", s, "must start with [A-Za-z0-9]")
	}
	for i := 1; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return invalid("pool", s, "must match [A-Za-z0-9][A-Za-z0-9._-]*")
		}
	}
	return nil
}

// PoolOf returns the pool mount point of an absolute file path, its
// first component ("/storage-pool/k8s/x.img" -> "storage-pool").
func PoolOf(path string) (string, error) {
	if err := ValidPath(path); err != nil {
		return "", err
	}
	pool, _, _ := strings.Cut(path[1:], "/")
	if err := ValidPool(pool); err != nil {
		return "", err
	}
	return pool, nil
}

// isQuoteSafe is the alphabet Quote accepts. None of these bytes is
// special inside a RouterOS double-quoted string.
func isQuoteSafe(c byte) bool {
	return isAlnum(c) || strings.IndexByte("/._:^~+-", c) >= 0
}

// Quote returns v double-quoted for the console. It refuses anything
// outside [A-Za-z0-9/._:^~+-], so no escaping is ever needed: quotes,
// backslashes, '$' (variables), brackets and braces (command
// substitution), ';', '?', backticks, whitespace, control characters and
// non-ASCII bytes are all rejected. The empty string quotes to `""`.
func Quote(v string) (string, error) {
	for i := 0; i < len(v); i++ {
		if !isQuoteSafe(v[i]) {
			return "", invalid("console value", v, fmt.Sprintf("byte %q at offset %d is not allowed", v[i], i))
		}
	}
	return `"` + v + `"`, nil
}

const (
	mib = int64(1) << 20
	gib = int64(1) << 30
)

// FormatSize renders a byte count for file-size=. RouterOS reads the
// suffixes as binary multiples, so only whole MiB are exact: bytes must
// be a positive multiple of 1 MiB. Whole GiB give "<n>G", else "<n>M".
func FormatSize(bytes int64) (string, error) {
	if bytes <= 0 || bytes%mib != 0 {
		return "", invalid("size", strconv.FormatInt(bytes, 10), "must be a positive multiple of 1 MiB")
	}
	if bytes%gib == 0 {
		return strconv.FormatInt(bytes/gib, 10) + "G", nil
	}
	return strconv.FormatInt(bytes/mib, 10) + "M", nil
}
