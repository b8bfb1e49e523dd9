package routeros

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// ParseNumber parses a non-negative integer that RouterOS may print with
// digit groups: "53 687 091 200" is 53687091200. Groups must be well
// formed (1-3 digits, then exactly 3), so a value damaged by wrapping is
// rejected rather than misread.
func ParseNumber(s string) (int64, error) {
	t := strings.TrimSpace(s)
	groups := strings.Split(t, " ")
	var digits []byte
	for i, g := range groups {
		if g == "" || !allDigits(g) || (len(groups) > 1 && (len(g) > 3 || (i > 0 && len(g) != 3))) {
			return 0, fmt.Errorf("%w: number %q", ErrMalformed, clip(s))
		}
		digits = append(digits, g...)
	}
	if len(digits) > 19 {
		return 0, fmt.Errorf("%w: number %q out of range", ErrMalformed, clip(s))
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: number %q out of range", ErrMalformed, clip(s))
	}
	return n, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}

// decimal splits "12.5" into "12" and "5". It accepts only plain digits
// with at most one fractional part, and bounds the length so that the
// arithmetic stays cheap on hostile input.
func decimal(s string) (whole, frac string, ok bool) {
	whole, frac, dot := strings.Cut(s, ".")
	if !allDigits(whole) || (dot && !allDigits(frac)) || len(whole) > 20 || len(frac) > 18 {
		return "", "", false
	}
	return whole, frac, true
}

// scale returns round((whole.frac) * mult), rounding halves up, or false
// when the result does not fit an int64.
func scale(whole, frac string, mult int64) (int64, bool) {
	num, _ := new(big.Int).SetString(whole+frac, 10)
	num.Mul(num, big.NewInt(mult))
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil)
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	if r.Lsh(r, 1).Cmp(den) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		return 0, false
	}
	return q.Int64(), true
}

// splitUnit splits "50.0GiB" (or "50.0 GiB") into number and unit.
func splitUnit(s string) (num, unit string) {
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	return s[:i], strings.TrimLeft(s[i:], " ")
}

var sizeUnits = map[string]int64{
	"": 1, "B": 1,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "PiB": 1 << 50, "EiB": 1 << 60,
}

// ParseHumanSize parses a human-readable size with binary units
// ("50.0GiB", "1024.0MiB", "512B", "10KiB", "1.5TiB"; a bare integer is
// bytes) and returns bytes rounded to the nearest byte. RouterOS prints
// one decimal, so the result is approximate; prefer an exact byte field.
func ParseHumanSize(s string) (int64, error) {
	num, unit := splitUnit(strings.TrimSpace(s))
	mult, okUnit := sizeUnits[unit]
	whole, frac, ok := decimal(num)
	if !okUnit || !ok || (unit == "" && frac != "") {
		return 0, fmt.Errorf("%w: size %q", ErrMalformed, clip(s))
	}
	n, ok := scale(whole, frac, mult)
	if !ok {
		return 0, fmt.Errorf("%w: size %q out of range", ErrMalformed, clip(s))
	}
	return n, nil
}

var rateUnits = map[string]int64{
	"bps": 1, "kbps": 1e3, "Kbps": 1e3, "Mbps": 1e6, "Gbps": 1e9, "Tbps": 1e12,
}

// ParseRate parses a bit rate ("0bps", "800kbps", "12.8Mbps", "1.2Gbps";
// decimal multiples) and returns bits per second, rounded.
func ParseRate(s string) (int64, error) {
	num, unit := splitUnit(strings.TrimSpace(s))
	mult, okUnit := rateUnits[unit]
	whole, frac, ok := decimal(num)
	if !okUnit || !ok {
		return 0, fmt.Errorf("%w: rate %q", ErrMalformed, clip(s))
	}
	n, ok := scale(whole, frac, mult)
	if !ok {
		return 0, fmt.Errorf("%w: rate %q out of range", ErrMalformed, clip(s))
	}
	return n, nil
}

var durationUnits = map[string]int64{
	"w":  int64(7 * 24 * time.Hour),
	"d":  int64(24 * time.Hour),
	"h":  int64(time.Hour),
	"m":  int64(time.Minute),
	"s":  int64(time.Second),
	"ms": int64(time.Millisecond),
	"us": int64(time.Microsecond),
	"ns": 1,
}

// ParseDuration parses a RouterOS duration: unit sequences such as
// "0ms", "15ms", "1s200ms", "15d2h45m30s", "1w2d", optionally ending in
// a clock "hh:mm:ss" ("1d02:03:04", "00:00:05").
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	bad := func() (time.Duration, error) {
		return 0, fmt.Errorf("%w: duration %q", ErrMalformed, clip(s))
	}
	if t == "" {
		return bad()
	}
	var total int64
	add := func(whole, frac string, unit int64) bool {
		v, ok := scale(whole, frac, unit)
		if !ok || v > math.MaxInt64-total {
			return false
		}
		total += v
		return true
	}
	for t != "" {
		if strings.IndexByte(t, ':') >= 0 && !strings.ContainsAny(t, "wdhmsun") {
			parts := strings.Split(t, ":")
			if len(parts) != 3 {
				return bad()
			}
			for i, unit := range []int64{int64(time.Hour), int64(time.Minute), int64(time.Second)} {
				whole, frac, ok := decimal(parts[i])
				if !ok || (i < 2 && frac != "") || (i > 0 && len(whole) != 2) || !add(whole, frac, unit) {
					return bad()
				}
			}
			break
		}
		i := 0
		for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
			i++
		}
		j := i
		for j < len(t) && t[j] >= 'a' && t[j] <= 'z' {
			j++
		}
		unit, okUnit := durationUnits[t[i:j]]
		whole, frac, ok := decimal(t[:i])
		if !okUnit || !ok || !add(whole, frac, unit) {
			return bad()
		}
		t = t[j:]
	}
	return time.Duration(total), nil
}

var timeLayouts = []string{
	"2006-01-02 15:04:05",
	"Jan/02/2006 15:04:05", // RouterOS prints the month in lower case; Go matches names case-insensitively
}

// ParseTime parses a RouterOS timestamp, "2025-11-12 00:36:13" or
// "jan/02/2025 10:30:45", in the device's zone loc (UTC when nil).
func ParseTime(s string, loc *time.Location) (time.Time, error) {
	if loc == nil {
		loc = time.UTC
	}
	t := strings.TrimSpace(s)
	for _, layout := range timeLayouts {
		if tm, err := time.ParseInLocation(layout, t, loc); err == nil {
			return tm, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: time %q", ErrMalformed, clip(s))
}

// ParseBool parses "yes"/"no" (and "true"/"false").
func ParseBool(s string) (bool, error) {
	switch strings.TrimSpace(s) {
	case "yes", "true":
		return true, nil
	case "no", "false":
		return false, nil
	}
	return false, fmt.Errorf("%w: boolean %q", ErrMalformed, clip(s))
}
