package rdstest

import (
	"fmt"
	"strconv"
	"strings"
)

// kind says how a property value is printed.
type kind int

const (
	kPlain  kind = iota // as is: type=file, file-path=/storage-pool/x.img
	kQuoted             // double-quoted in detail: slot="pvc-1"
	kBytes              // exact bytes with digit groups: size=53 687 091 200
	kHuman              // binary human size: file-size=50.0GiB
	kNumber             // plain integer, compared numerically
	kTime               // 2025-11-11 16:47:07, never quoted
)

// prop is one property of a printed item. group marks the first property
// of a line group (see wrapEntry).
type prop struct {
	key   string
	raw   string
	kind  kind
	group bool
}

// props is an item's properties in the device's print order.
type props []prop

func (p props) get(key string) prop {
	for _, x := range p {
		if x.key == key {
			return x
		}
	}
	return prop{key: key}
}

// equal compares a property with a where/find operand. Sizes compare by
// value, so size=50G and size=53687091200 both match a 50 GiB disk.
func (x prop) equal(v string) bool {
	switch x.kind {
	case kBytes, kHuman, kNumber:
		a, err1 := strconv.ParseInt(x.raw, 10, 64)
		b, err2 := parseSize(v)
		if err1 == nil && err2 == nil {
			return a == b
		}
	}
	switch v {
	case "true":
		v = "yes"
	case "false":
		v = "no"
	}
	return x.raw == v
}

// detailText renders key=value as print detail does.
func (x prop) detailText() string {
	switch x.kind {
	case kQuoted:
		return x.key + "=" + quote(x.raw)
	case kBytes:
		return x.key + "=" + groupDigits(x.raw)
	case kHuman:
		n, _ := strconv.ParseInt(x.raw, 10, 64)
		return x.key + "=" + humanSize(n)
	}
	return x.key + "=" + x.raw
}

// terseText renders key=value as print terse does: quotes only where the
// value could not be read back otherwise (empty, or containing blanks or
// console specials); numbers and times stay bare.
func (x prop) terseText() string {
	switch x.kind {
	case kBytes, kHuman, kNumber, kTime:
		return x.detailText()
	}
	if needsQuote(x.raw) {
		return x.key + "=" + quote(x.raw)
	}
	return x.key + "=" + x.raw
}

func needsQuote(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || strings.IndexByte("\"\\$;[]{}()?`=", c) >= 0 {
			return true
		}
	}
	return false
}

// quote renders s as a RouterOS string literal.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\' || c == '$':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// groupDigits inserts a space every three digits from the right:
// "53687091200" -> "53 687 091 200".
func groupDigits(s string) string {
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i := 0; i < len(s); i++ {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(' ')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func groupInt(n int64) string { return groupDigits(strconv.FormatInt(n, 10)) }

// humanSize renders bytes with one decimal in binary units. The unit is the
// largest one the value strictly exceeds, so exact powers print in the unit
// below: 1 GiB is "1024.0MiB" and 50 GiB is "50.0GiB" (both seen on
// devices, rdsclient/docs/device.md, "Units"). Up to 1024 bytes print as
// a bare number.
func humanSize(n int64) string {
	if n <= 1024 {
		return strconv.FormatInt(n, 10)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / 1024
	u := 0
	for v > 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + units[u]
}

// parseSize reads a size argument: digits with an optional binary suffix
// K, M, G or T (1G = 1073741824 bytes).
func parseSize(s string) (int64, error) {
	if s == "" {
		return 0, strconv.ErrSyntax
	}
	mult := int64(1)
	switch s[len(s)-1] {
	case 'k', 'K':
		mult = 1 << 10
	case 'M':
		mult = 1 << 20
	case 'G':
		mult = 1 << 30
	case 'T':
		mult = 1 << 40
	}
	if mult != 1 {
		s = s[:len(s)-1]
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n > (1<<63-1)/mult {
		return 0, strconv.ErrRange
	}
	return n * mult, nil
}

// formatRate renders bits per second with decimal multiples: 0bps, 980bps,
// 12.8kbps, 12.8Mbps, 1.2Gbps.
func formatRate(bits int64) string {
	switch {
	case bits < 1000:
		return strconv.FormatInt(bits, 10) + "bps"
	case bits < 1000_000:
		return strconv.FormatFloat(float64(bits)/1e3, 'f', 1, 64) + "kbps"
	case bits < 1000_000_000:
		return strconv.FormatFloat(float64(bits)/1e6, 'f', 1, 64) + "Mbps"
	}
	return strconv.FormatFloat(float64(bits)/1e9, 'f', 1, 64) + "Gbps"
}

const crlf = "\r\n"

// wrapEntry lays out one print-detail entry the way the console does
// (rdsclient/docs/device.md, "Wrapping"):
//
//   - the first line starts with prefix (the right-aligned index), the
//     continuation lines with indent spaces;
//   - properties are separated by one space; a property opening a line
//     group starts a new line, unless the current line was itself opened
//     by wrapping (then the group continues it);
//   - a line that would be wider than width breaks at its last space that
//     still fits, wherever it is: between properties or inside a value
//     (size=53 | 687 091 200), so a line broken this way is shorter than
//     width;
//   - a line with no such space past its indentation (a path or NQN longer
//     than a line) is cut at the width, inside the value, and fills the
//     line; a space right after the cut is dropped.
//
// The groups and the soft group break reproduce the /disk and /file
// captures byte for byte (golden_test.go). No line exceeds width.
func wrapEntry(prefix string, indent, width int, fields props, b *strings.Builder) {
	if minW := max(len(prefix), indent) + 10; width < minW {
		width = minW
	}
	pad := strings.Repeat(" ", indent)
	cur := prefix        // the line being built
	start := len(prefix) // where its content starts
	has := false         // cur holds a property
	byWrap := false      // cur was opened by wrapping
	emit := func(line string) {
		b.WriteString(line)
		b.WriteString(crlf)
	}
	for _, f := range fields {
		if f.group && has && !byWrap {
			emit(cur)
			cur, start, has = pad, indent, false
		}
		if has {
			cur += " "
		}
		cur += f.detailText()
		has = true
		for len(cur) > width {
			var rest string
			if i := strings.LastIndexByte(cur[:width], ' '); i > start {
				emit(cur[:i])
				rest = cur[i+1:]
			} else {
				emit(cur[:width])
				rest = strings.TrimPrefix(cur[width:], " ")
			}
			cur, start, has, byWrap = pad+rest, indent, rest != "", true
		}
	}
	if has {
		emit(cur)
	}
}

// keyValueLines renders "key: value" lines with keys right-aligned two
// columns past the longest key, as /system print and monitor commands do.
// With alignRight the values are right-aligned too (monitor layout).
func keyValueLines(kv [][2]string, alignRight bool) string {
	kw, vw := 0, 0
	for _, p := range kv {
		kw = max(kw, len(p[0]))
		vw = max(vw, len(p[1]))
	}
	var b strings.Builder
	for _, p := range kv {
		if alignRight {
			fmt.Fprintf(&b, "%*s:%*s\r\n", kw+2, p[0], vw+1, p[1])
		} else {
			fmt.Fprintf(&b, "%*s: %s\r\n", kw+2, p[0], p[1])
		}
	}
	return b.String()
}
