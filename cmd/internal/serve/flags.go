package serve

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// durationFlag reads a bare number of seconds ("1", "2.5") or a Go duration
// ("1500ms") within [min, max]; a zero max is no upper bound.
type durationFlag struct {
	d        *time.Duration
	min, max time.Duration
}

func (f durationFlag) String() string {
	if f.d == nil {
		return ""
	}
	return f.d.String()
}

func (f durationFlag) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	if d <= 0 {
		return fmt.Errorf("duration must be positive")
	}
	if d < f.min {
		return fmt.Errorf("%s is below the minimum %s", d, f.min)
	}
	if f.max > 0 && d > f.max {
		return fmt.Errorf("%s is above the maximum %s", d, f.max)
	}
	*f.d = d
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(secs * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want seconds (1) or a Go duration (1500ms): %w", err)
	}
	return d, nil
}

// sizeFlag reads a byte count, bare or with a binary suffix (KiB, MiB, GiB),
// within [min, max].
type sizeFlag struct {
	n        *int
	min, max int
}

func (f sizeFlag) String() string {
	if f.n == nil {
		return ""
	}
	return formatSize(*f.n)
}

func (f sizeFlag) Set(s string) error {
	mult := 1
	num := s
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	v, err := strconv.ParseUint(strings.TrimSpace(num), 10, 40)
	if err != nil {
		return fmt.Errorf("want bytes (8388608) or a size with KiB, MiB or GiB (8MiB)")
	}
	n := int(v) * mult
	if n < f.min || n > f.max {
		return fmt.Errorf("%s is outside [%s, %s]", formatSize(n), formatSize(f.min), formatSize(f.max))
	}
	*f.n = n
	return nil
}

func formatSize(n int) string {
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult && n%u.mult == 0 {
			return strconv.Itoa(n/u.mult) + u.suffix
		}
	}
	return strconv.Itoa(n)
}

// uidsFlag collects a repeated --allow-uid.
type uidsFlag struct{ uids *[]uint32 }

func (f uidsFlag) String() string {
	if f.uids == nil {
		return ""
	}
	s := make([]string, len(*f.uids))
	for i, u := range *f.uids {
		s[i] = strconv.FormatUint(uint64(u), 10)
	}
	return strings.Join(s, ",")
}

func (f uidsFlag) Set(s string) error {
	u, err := strconv.ParseUint(s, 10, 32)
	if err != nil || u == 1<<32-1 { // (uid_t)-1 names no user
		return fmt.Errorf("want a numeric uid below 4294967295")
	}
	*f.uids = append(*f.uids, uint32(u))
	return nil
}

// choiceFlag takes one of a fixed set of words.
type choiceFlag struct {
	v       *string
	choices []string
}

func (f choiceFlag) String() string {
	if f.v == nil {
		return ""
	}
	return *f.v
}

func (f choiceFlag) Set(s string) error {
	for _, c := range f.choices {
		if s == c {
			*f.v = s
			return nil
		}
	}
	return fmt.Errorf("want %s", strings.Join(f.choices, " or "))
}

// ParseSize reads a byte count as --client-buffer does: bare or with KiB,
// MiB or GiB.
func ParseSize(s string) (int64, error) {
	var n int
	if err := (sizeFlag{n: &n, max: 1 << 50}).Set(s); err != nil {
		return 0, err
	}
	return int64(n), nil
}
