//go:build linux

package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/agentrelay/agentrelay/client"
	"github.com/agentrelay/agentrelay/frame"
)

const execHelp = `Usage: relay exec [FLAGS] [--] COMMAND [ARG...]

Run COMMAND in the guest through a running relay, forwarding stdin, stdout
and stderr, and exit with the command's exit status.

Flags:
      --socket PATH          the relay's socket; default: $RELAY_SOCKET, else
                             $XDG_RUNTIME_DIR/agentrelay/agent.sock, else
                             /run/agentrelay/agent.sock
  -t, --tty                  run the command under a pseudo-terminal (stdout
                             then carries stderr too); the remote TERM follows
                             the local one and window size changes follow
  -i, --interactive          accepted for docker's -it habit: stdin is always
                             forwarded unless -n is given
  -n, --no-stdin             give the command an empty stdin and leave ours
                             alone, like ssh -n (for use in a while-read loop)
  -e, --env NAME[=VALUE]     set an environment variable (repeatable); NAME
                             alone passes the local value, if set
  -w, --workdir DIR          working directory in the guest
  -u, --user USER[:GROUP]    run as this user (a name or a number)
      --rlimit RES=SOFT[:HARD]
                             a resource limit (repeatable): RES is one of
                             as core cpu data fsize locks memlock msgqueue nice
                             nofile nproc rss rtprio rttime sigpending stack;
                             a limit is a number or "unlimited"; HARD
                             defaults to SOFT
      --timeout DUR          at DUR (30s, 1m30s, or seconds) send SIGTERM,
                             SIGKILL after --kill-after, and exit 124
      --kill-after DUR       grace between --timeout's SIGTERM and SIGKILL
                             (default 10s)
  -h, --help                 print this help

Signals: SIGINT, SIGTERM, SIGHUP and SIGQUIT that relay exec receives are
forwarded to the command, whose own exit status relay exec then exits with.
A second Ctrl-C (SIGINT) within a second sends SIGKILL instead.

Exit status:
  N      the command's own exit status
  128+N  the command was killed by signal N (130 for SIGINT, 137 for SIGKILL)
  2      usage error: bad flags or arguments (e.g. not valid UTF-8)
  124    --timeout expired
  125    the relay or the connection to it failed: cannot connect, all client
         slots busy, guest not ready, connection lost
  126    the command was found but could not be started: permission denied,
         bad working directory, and every failure other than not found
  127    command not found

Examples:
  relay exec -- uname -a
  relay exec -it -- bash
  relay exec -e GREETING=hi -e HOME -w /tmp -- sh -c 'echo $GREETING $HOME; pwd'
  relay exec --timeout 5m --rlimit nofile=1024:4096 -- make test
  RELAY_SOCKET=/tmp/agentrelay/agent.sock relay exec -- id
  printf 'a\nb\n' | while read -r x; do relay exec -n -- echo "$x"; done
`

// execFlags are relay exec's flags as given.
type execFlags struct {
	socket      string
	tty         bool
	interactive bool
	noStdin     bool
	env         listFlag
	workdir     string
	user        string
	rlimits     listFlag
	timeout     time.Duration
	killAfter   time.Duration
}

func (f *execFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.socket, "socket", client.DefaultSocket(), "")
	for _, n := range []string{"t", "tty"} {
		fs.BoolVar(&f.tty, n, false, "")
	}
	for _, n := range []string{"i", "interactive"} {
		fs.BoolVar(&f.interactive, n, false, "")
	}
	for _, n := range []string{"n", "no-stdin"} {
		fs.BoolVar(&f.noStdin, n, false, "")
	}
	for _, n := range []string{"e", "env"} {
		fs.Var(&f.env, n, "")
	}
	for _, n := range []string{"w", "workdir"} {
		fs.StringVar(&f.workdir, n, "", "")
	}
	for _, n := range []string{"u", "user"} {
		fs.StringVar(&f.user, n, "", "")
	}
	fs.Var(&f.rlimits, "rlimit", "")
	fs.Var(durationFlag{&f.timeout}, "timeout", "")
	f.killAfter = 10 * time.Second
	fs.Var(durationFlag{&f.killAfter}, "kill-after", "")
}

// execCmd runs one command through a relay and returns the exit code.
func execCmd(args []string) int {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	var f execFlags
	f.register(fs)
	if code := parse(fs, "exec", execHelp, args); code >= 0 {
		return code
	}
	if fs.NArg() == 0 {
		return usageError("exec", "no command given")
	}
	opts, err := f.options(fs.Args(), os.LookupEnv)
	if err != nil {
		return usageError("exec", "%v", err)
	}
	return runExec(&f, opts)
}

// options turns the flags and the command line into the request, refusing
// locally what the guest could only answer with bad_args.
func (f *execFlags) options(argv []string, lookupEnv func(string) (string, bool)) (client.ExecOptions, error) {
	o := client.ExecOptions{Cmd: argv[0], Args: argv[1:], Cwd: f.workdir, User: f.user, TTY: f.tty}
	for i, a := range argv {
		if !utf8.ValidString(a) {
			if i == 0 {
				return o, fmt.Errorf("the command name is not valid UTF-8: %s", strconv.Quote(a))
			}
			return o, fmt.Errorf("argument %d is not valid UTF-8: %s", i, strconv.Quote(a))
		}
	}
	if !utf8.ValidString(f.workdir) {
		return o, fmt.Errorf("--workdir is not valid UTF-8: %s", strconv.Quote(f.workdir))
	}
	if !utf8.ValidString(f.user) {
		return o, fmt.Errorf("--user is not valid UTF-8: %s", strconv.Quote(f.user))
	}

	names := map[string]bool{}
	for _, e := range f.env {
		name, _, hasValue := strings.Cut(e, "=")
		if name == "" {
			return o, fmt.Errorf("--env %s: no variable name", strconv.Quote(e))
		}
		if !hasValue {
			// As docker does: the local value, or nothing if unset.
			v, ok := lookupEnv(name)
			if !ok {
				continue
			}
			e = name + "=" + v
			if !utf8.ValidString(e) {
				return o, fmt.Errorf("--env %s: the local value is not valid UTF-8: %s", name, strconv.Quote(v))
			}
		} else if !utf8.ValidString(e) {
			return o, fmt.Errorf("--env value is not valid UTF-8: %s", strconv.Quote(e))
		}
		names[name] = true
		o.Env = append(o.Env, e)
	}
	// Under -t the remote terminal is ours: the program there must emit
	// what our terminal understands.
	if term, ok := lookupEnv("TERM"); f.tty && ok && term != "" && !names["TERM"] && utf8.ValidString(term) {
		o.Env = append(o.Env, "TERM="+term)
	}

	for _, s := range f.rlimits {
		rl, err := parseRlimit(s)
		if err != nil {
			return o, fmt.Errorf("--rlimit %s: %w", strconv.Quote(s), err)
		}
		o.Rlimits = append(o.Rlimits, rl)
	}
	return o, nil
}

// rlimitNames are the resources the protocol names (prlimit(1)'s names).
var rlimitNames = []string{"as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue",
	"nice", "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"}

// parseRlimit reads RES=SOFT[:HARD].
func parseRlimit(s string) (frame.Rlimit, error) {
	res, limits, ok := strings.Cut(s, "=")
	if !ok {
		return frame.Rlimit{}, fmt.Errorf("want RES=SOFT[:HARD], e.g. nofile=1024:4096")
	}
	res = strings.TrimPrefix(strings.ToLower(res), "rlimit_")
	if !slices.Contains(rlimitNames, res) {
		return frame.Rlimit{}, fmt.Errorf("unknown resource %q (one of %s)", res, strings.Join(rlimitNames, " "))
	}
	softS, hardS, hasHard := strings.Cut(limits, ":")
	if !hasHard {
		hardS = softS
	}
	soft, err := parseLimit(softS)
	if err != nil {
		return frame.Rlimit{}, err
	}
	hard, err := parseLimit(hardS)
	if err != nil {
		return frame.Rlimit{}, err
	}
	if soft > hard {
		return frame.Rlimit{}, fmt.Errorf("soft limit above the hard limit")
	}
	return frame.Rlimit{Resource: res, Soft: soft, Hard: hard}, nil
}

func parseLimit(s string) (uint64, error) {
	switch s {
	case "unlimited", "infinity":
		return math.MaxUint64, nil // RLIM_INFINITY
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("limit %q is not a number or \"unlimited\"", s)
	}
	return n, nil
}
