package routeros

import (
	"errors"
	"testing"
	"time"
)

func TestParseNumber(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"512", 512}, {"53 687 091 200", 53687091200}, {"107 374 182 400", 107374182400},
		{"7 949 127 950 336", 7949127950336}, {" 243 401 ", 243401}, {"9 223 372 036 854 775 807", 1<<63 - 1},
		{"9223372036854775807", 1<<63 - 1}, {"007", 7}, {"1 000", 1000},
	} {
		if got, err := ParseNumber(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseNumber(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"", " ", "-1", "+1", "1.5", "abc", "12a", "53 687091 200", "53  687", "1 23", "1234 567",
		"9 223 372 036 854 775 808", "99999999999999999999", "1\t000", "1,000", "0x10", "１２",
		"00000000000000000000001",
	} {
		if got, err := ParseNumber(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseNumber(%q) = %d, %v; want ErrMalformed", in, got, err)
		}
	}
}

func TestParseHumanSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"50.0GiB", 50 << 30}, {"1024.0MiB", 1 << 30}, {"512B", 512}, {"10KiB", 10 << 10},
		{"1.5TiB", 3 << 39}, {"100.0GiB", 100 << 30}, {"0B", 0}, {"0", 0}, {"4096", 4096},
		{"1.1KiB", 1126}, // 1126.4 rounds down
		{"1.5B", 2},      // halves round up
		{"2.3MiB", 2411725}, {"10.0 GiB", 10 << 30}, {"7.0EiB", 7 << 60},
	} {
		if got, err := ParseHumanSize(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseHumanSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"", "GiB", "-1GiB", "1GB", "1G", "1gib", "1.GiB", ".5GiB", "1..5GiB", "1.5", "8.0EiB",
		"99999999999999999999999GiB", "1e3B", "1 000B", "50.0GiBx", "1/2GiB",
	} {
		if got, err := ParseHumanSize(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseHumanSize(%q) = %d, %v; want ErrMalformed", in, got, err)
		}
	}
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0bps", 0}, {"12.8Mbps", 12800000}, {"1.2Gbps", 1200000000}, {"800kbps", 800000},
		{"800Kbps", 800000}, {"17bps", 17}, {"0.5kbps", 500}, {"1.0005kbps", 1001},
	} {
		if got, err := ParseRate(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "0", "12.8", "12.8MBps", "12.8Mibps", "-1bps", "bps", "1e9bps", "99999999999Tbps"} {
		if got, err := ParseRate(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseRate(%q) = %d, %v; want ErrMalformed", in, got, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"0ms", 0}, {"15ms", 15 * time.Millisecond}, {"1s200ms", 1200 * time.Millisecond},
		{"15d2h45m30s", 15*day + 2*time.Hour + 45*time.Minute + 30*time.Second},
		{"1w2d", 9 * day}, {"5m", 5 * time.Minute}, {"1h", time.Hour}, {"250us", 250 * time.Microsecond},
		{"3ns", 3}, {"1.5s", 1500 * time.Millisecond}, {"00:00:05", 5 * time.Second},
		{"1d02:03:04", day + 2*time.Hour + 3*time.Minute + 4*time.Second},
		{"12:00:00.5", 12*time.Hour + 500*time.Millisecond}, {" 30s ", 30 * time.Second},
	} {
		if got, err := ParseDuration(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"", "ms", "15", "15x", "1s-2ms", "-1s", "1y", "1:2", "1:2:3", "01:02:03:04", "00:5:00", "0.5:00:00",
		"99999999999w", "15d 2h", "1s:00:00", "1h2", "1.s",
	} {
		if got, err := ParseDuration(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseDuration(%q) = %v, %v; want ErrMalformed", in, got, err)
		}
	}
}

func TestParseTime(t *testing.T) {
	loc := time.FixedZone("rds", 3600)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"2025-11-12 00:36:13", time.Date(2025, 11, 12, 0, 36, 13, 0, loc)},
		{"jan/02/2025 10:30:45", time.Date(2025, 1, 2, 10, 30, 45, 0, loc)},
		{"dec/31/2024 23:59:59", time.Date(2024, 12, 31, 23, 59, 59, 0, loc)},
		{"Jan/02/2025 10:30:45", time.Date(2025, 1, 2, 10, 30, 45, 0, loc)},
	} {
		got, err := ParseTime(tc.in, loc)
		if err != nil || !got.Equal(tc.want) || got.Location() != loc {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if got, err := ParseTime("2025-11-12 00:36:13", nil); err != nil || got.Location() != time.UTC {
		t.Errorf("nil location: %v, %v", got, err)
	}
	for _, in := range []string{"", "2025-11-12", "2025-13-12 00:00:00", "foo/02/2025 10:30:45", "jan/32/2025 10:30:45", "2025-11-12T00:36:13Z", "00:36:13"} {
		if got, err := ParseTime(in, loc); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseTime(%q) = %v, %v; want ErrMalformed", in, got, err)
		}
	}
}

func TestParseBool(t *testing.T) {
	for in, want := range map[string]bool{"yes": true, "no": false, "true": true, "false": false, " yes ": true} {
		if got, err := ParseBool(in); err != nil || got != want {
			t.Errorf("ParseBool(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "y", "n", "Yes", "1", "0", "-", "none"} {
		if _, err := ParseBool(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseBool(%q) err = %v; want ErrMalformed", in, err)
		}
	}
}
