package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var code int
	switch cmd {
	case "serve":
		code = serve(args)
	case "exec":
		code = execCmd(args)
	case "stats":
		code = statsCmd(args)
	case "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "relay: unknown command %q\n", cmd)
		usage()
		code = 2
	}
	os.Exit(code)
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  relay [serve] --socket PATH --guest SPEC [--exec-log DIR] [--ready-timeout DUR] [--debug-addr ADDR] [--impl reactor|goroutine]
  relay exec --socket PATH [-t] [-e K=V]... [-w DIR] -- CMD [ARGS...]
  relay stats --debug-addr ADDR

SPEC: unix:PATH | vsock:PATH:PORT | echo | builtin (runs commands as host processes: no isolation)
`)
}

// durationFlag reads a bare number of seconds ("1", "2.5") or a Go duration
// ("1500ms").
type durationFlag struct{ d *time.Duration }

func (f durationFlag) String() string {
	if f.d == nil {
		return ""
	}
	return f.d.String()
}

func (f durationFlag) Set(s string) error {
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

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }
