package issuance

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration that reads and writes as text in config files:
// Go durations ("720h", "15m", "1h30m") or whole days ("30d"). Negative
// durations are refused.
type Duration time.Duration

const day = 24 * time.Hour

// MarshalText writes whole days as "30d" and anything else as a Go duration.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// String returns the text form MarshalText writes.
func (d Duration) String() string {
	td := time.Duration(d)
	if td != 0 && td%day == 0 {
		return strconv.FormatInt(int64(td/day), 10) + "d"
	}
	return td.String()
}

// UnmarshalText parses "30d" (whole days) or a Go duration ("720h").
func (d *Duration) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	if s == "" {
		return fmt.Errorf("issuance: invalid duration %q: empty", s)
	}
	if strings.HasPrefix(s, "-") {
		return fmt.Errorf("issuance: invalid duration %q: must not be negative", s)
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseInt(n, 10, 64)
		if err != nil || days < 0 || strings.HasPrefix(n, "+") {
			return fmt.Errorf("issuance: invalid duration %q: days must be a whole number, e.g. \"30d\"", s)
		}
		if days > int64(math.MaxInt64/day) {
			return fmt.Errorf("issuance: invalid duration %q: too long", s)
		}
		*d = Duration(time.Duration(days) * day)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("issuance: invalid duration %q: use a Go duration (\"720h\", \"15m\") or days (\"30d\")", s)
	}
	if v < 0 {
		return fmt.Errorf("issuance: invalid duration %q: must not be negative", s)
	}
	*d = Duration(v)
	return nil
}
