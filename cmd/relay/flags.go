//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Exit codes of the binary's own failures, as docker and bash use them.
// A command's own status passes through unchanged (128+N when signal N
// killed it).
const (
	exitFailure   = 1   // a subcommand other than exec failed
	exitUsage     = 2   // bad flags or arguments: nothing was done
	exitTimeout   = 124 // exec --timeout expired, as timeout(1)
	exitRelay     = 125 // the relay or the connection to it failed
	exitCannotRun = 126 // the guest could not start the command, for any reason but not-found
	exitNotFound  = 127 // the guest found no such command
)

// parse parses args into fs for subcommand name, whose help is help. It
// returns the exit code to end with, or -1 to go on: -h/--help prints the
// help on stdout (0); a bad flag prints the error and a pointer to --help
// on stderr (2).
func parse(fs *flag.FlagSet, name, help string, args []string) int {
	fs.SetOutput(io.Discard) // the messages below replace flag's own
	fs.Usage = func() {}
	err := fs.Parse(expandShorts(fs, args))
	switch {
	case err == nil:
		return -1
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(os.Stdout, help)
		return 0
	}
	return usageError(name, "%s", longFlagNames.ReplaceAllString(err.Error(), "$1--$2"))
}

// longFlagNames finds "-name" in the flag package's messages, which spell
// every flag with one dash, so that they can name long flags as --help does.
var longFlagNames = regexp.MustCompile(`(^|\s)-([a-z][a-z-]+)`)

// usageError reports a usage error of subcommand name and returns
// exitUsage.
func usageError(name, format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "relay %s: %s\nRun 'relay %s --help' for usage.\n", name, fmt.Sprintf(format, args...), name)
	return exitUsage
}

// expandShorts splits grouped one-letter boolean flags ("-it") into
// separate ones ("-i", "-t"), which the flag package does not do. It
// stops where flag stops: at "--" or the first non-flag argument.
func expandShorts(fs *flag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || a == "-" || !strings.HasPrefix(a, "-") {
			return append(out, args[i:]...)
		}
		name := strings.TrimLeft(a, "-")
		hasValue := strings.Contains(name, "=")
		name, _, _ = strings.Cut(name, "=")
		f := fs.Lookup(name)
		switch {
		case f == nil && !strings.HasPrefix(a, "--") && !hasValue && allBoolFlags(fs, name):
			for _, c := range name {
				out = append(out, "-"+string(c))
			}
		case f != nil && !isBool(f) && !hasValue && i+1 < len(args):
			out = append(out, a, args[i+1]) // the value may look like a flag
			i++
		default:
			out = append(out, a)
		}
	}
	return out
}

func allBoolFlags(fs *flag.FlagSet, letters string) bool {
	for _, c := range letters {
		f := fs.Lookup(string(c))
		if f == nil || !isBool(f) {
			return false
		}
	}
	return len(letters) > 1
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// durationFlag reads a Go duration ("1m30s") or a bare number of seconds
// ("90", "2.5"), as timeout(1) takes them; 0 means none.
type durationFlag struct{ d *time.Duration }

func (f durationFlag) String() string {
	if f.d == nil || *f.d == 0 {
		return ""
	}
	return f.d.String()
}

func (f durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		secs, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || math.IsNaN(secs) || secs > math.MaxInt64/float64(time.Second) {
			return errors.New("want a duration such as 30s, 1m30s or 2.5 (seconds)")
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d < 0 {
		return errors.New("must not be negative")
	}
	*f.d = d
	return nil
}
