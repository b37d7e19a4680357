package serve

import (
	"fmt"
	"strconv"
	"time"
)

// DurationFlag reads a bare number of seconds ("1", "2.5") or a Go duration
// ("1500ms").
type DurationFlag struct{ d *time.Duration }

func (f DurationFlag) String() string {
	if f.d == nil {
		return ""
	}
	return f.d.String()
}

func (f DurationFlag) Set(s string) error {
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		if secs <= 0 {
			return fmt.Errorf("duration must be positive")
		}
		*f.d = time.Duration(secs * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want seconds (1) or a Go duration (1500ms): %w", err)
	}
	if d <= 0 {
		return fmt.Errorf("duration must be positive")
	}
	*f.d = d
	return nil
}
