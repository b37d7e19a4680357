package host

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// RaiseNoFile lifts RLIMIT_NOFILE's soft limit to its hard limit and, as
// root, the hard limit to fs.nr_open, so that 10,000 sandboxes (about three
// descriptors each, idle) fit. It returns the limit now in force; err, if
// the soft limit was raised anyway, says why the hard one could not be
// (root without CAP_SYS_RESOURCE, as in many containers).
func RaiseNoFile() (soft, hard uint64, err error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, err
	}
	var hardErr error
	if os.Geteuid() == 0 {
		if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
			if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n > rl.Max {
				raised := unix.Rlimit{Cur: n, Max: n}
				if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &raised); err != nil {
					hardErr = fmt.Errorf("hard limit %d not raised to fs.nr_open %d: %w", rl.Max, n, err)
				} else {
					return n, n, nil
				}
			}
		}
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			return 0, 0, err
		}
	}
	return rl.Cur, rl.Max, hardErr
}
