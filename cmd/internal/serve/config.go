package serve

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"time"

	"github.com/agentrelay/agentrelay/client"
	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/guest"
	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/unixsock"
)

// config is the serve command line, checked.
type config struct {
	socket       string
	spec         guest.Spec
	execLog      string
	debugAddr    string
	readyTimeout time.Duration
	logFormat    string
	logLevel     slog.Level

	allowUIDs         []uint32
	acceptWait        time.Duration
	clientBuffer      int
	quarantineTimeout time.Duration
	handshake         relay.Handshake
	outputBudget      int64
	outputBudgetFlag  int // --output-budget as given (sizeFlag holds an int)
}

// Bounds of the tunable options: below them the relay would misbehave
// (a client buffer must hold one whole frame) or thrash, above them a typo
// would hold memory or sessions for hours.
const (
	minAcceptWait        = 10 * time.Millisecond
	maxAcceptWait        = 10 * time.Minute
	minQuarantineTimeout = 100 * time.Millisecond
	maxQuarantineTimeout = time.Hour
	minClientBuffer      = (frame.MaxFrame + 1<<20 - 1) &^ (1<<20 - 1) // one whole frame, in MiB
	maxClientBuffer      = 1 << 30
	maxOutputBudget      = 16 << 30
)

// handshakeFlag parses --handshake.
type handshakeFlag struct{ h *relay.Handshake }

func (f handshakeFlag) String() string {
	if f.h == nil {
		return "auto"
	}
	return f.h.String()
}

func (f handshakeFlag) Set(v string) error {
	h, err := relay.ParseHandshake(v)
	if err != nil {
		return errors.New("want auto, 0.4 or 0.5")
	}
	*f.h = h
	return nil
}

var singleDash = regexp.MustCompile(`(flag |: )-([a-z])`)

// errHelp: --help was asked for and printed.
var errHelp = errors.New("help")

// newFlags defines the serve flags on a fresh set that fills c with the
// defaults of relay.Options.
func newFlags(prog string, c *config) *flag.FlagSet {
	*c = config{
		readyTimeout:      60 * time.Second,
		logFormat:         "text",
		acceptWait:        5 * time.Second,
		clientBuffer:      8 << 20,
		quarantineTimeout: 30 * time.Second,
		outputBudgetFlag:  64 << 20,
	}
	fs := flag.NewFlagSet(prog+" serve", flag.ContinueOnError)
	fs.StringVar(&c.socket, "socket", client.DefaultSocket(), "path of the clients' Unix socket (created 0600; its directory 0700); default $RELAY_SOCKET, else $XDG_RUNTIME_DIR/agentrelay/agent.sock, else /run/agentrelay/agent.sock")
	fs.Var(guestFlag{&c.spec}, "guest", "guest console: unix:PATH | vsock:PATH:PORT | echo | builtin (runs commands as host processes: no isolation); required")
	fs.StringVar(&c.execLog, "exec-log", "", "directory for exec.log, the captured output of exec sessions (off if empty)")
	fs.Var(durationFlag{d: &c.readyTimeout}, "ready-timeout", "how long to wait for the guest's core.ready: seconds (60) or a duration (1500ms)")
	fs.StringVar(&c.debugAddr, "debug-addr", "", "serve pprof, /stats, /metrics and /healthz on this loopback HOST:PORT (port 0: any)")
	fs.Var(choiceFlag{&c.logFormat, []string{"text", "json"}}, "log-format", "log record format on stderr: text or json")
	fs.Var(uidsFlag{&c.allowUIDs}, "allow-uid", "a peer uid allowed to connect; repeat for more (default: the relay's euid and root)")
	fs.Var(durationFlag{d: &c.acceptWait, min: minAcceptWait, max: maxAcceptWait}, "accept-wait",
		fmt.Sprintf("how long a connection waits for one of the 16 slots to free (%s to %s)", minAcceptWait, maxAcceptWait))
	fs.Var(sizeFlag{n: &c.clientBuffer, min: minClientBuffer, max: maxClientBuffer}, "client-buffer",
		fmt.Sprintf("bound of each client's output buffer: bytes or KiB/MiB/GiB (%s to %s)", formatSize(minClientBuffer), formatSize(maxClientBuffer)))
	fs.Var(durationFlag{d: &c.quarantineTimeout, min: minQuarantineTimeout, max: maxQuarantineTimeout}, "quarantine-timeout",
		fmt.Sprintf("how long a departed client's sessions stay quarantined if the guest never ends them (%s to %s)", minQuarantineTimeout, maxQuarantineTimeout))
	fs.Var(handshakeFlag{&c.handshake}, "handshake",
		"the clients' handshake: auto (from the guest's core.ready: v 1 gives 0.4, v ≥ 2 gives 0.5), 0.4 (16 slots, [offset]) or 0.5 (128 slots, [id_start][id_end_exclusive])")
	fs.Var(sizeFlag{n: &c.outputBudgetFlag, min: minClientBuffer, max: maxOutputBudget}, "output-budget",
		fmt.Sprintf("bound of all clients' output buffers together, beyond 64 KiB each: bytes or KiB/MiB/GiB (at least --client-buffer, up to %s; default 64 MiB)", formatSize(maxOutputBudget)))
	fs.SetOutput(io.Discard) // parse errors are reported by parseConfig, once
	return fs
}

// guestFlag parses --guest as it is given, so a bad spec is a usage error
// like any bad flag.
type guestFlag struct{ s *guest.Spec }

func (f guestFlag) String() string {
	if f.s == nil || f.s.Kind == 0 {
		return ""
	}
	return f.s.String()
}

func (f guestFlag) Set(v string) error {
	s, err := guest.ParseSpec(v)
	if err != nil {
		return err
	}
	*f.s = s
	return nil
}

// parseConfig reads and checks the whole command line and the environment
// without creating anything. Every error it returns is a usage error (exit
// 2), except errHelp when --help was given.
func parseConfig(prog string, args []string) (config, error) {
	var c config
	fs := newFlags(prog, &c)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, errHelp
		}
		// The flag package names flags with one dash; the help uses two.
		return c, errors.New(singleDash.ReplaceAllString(err.Error(), "$1--$2"))
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.spec.Kind == 0 {
		return c, errors.New("--guest is required")
	}
	if c.outputBudget = int64(c.outputBudgetFlag); c.outputBudget < int64(c.clientBuffer) {
		return c, fmt.Errorf("--output-budget %s is below --client-buffer %s", formatSize(c.outputBudgetFlag), formatSize(c.clientBuffer))
	}
	if err := unixsock.CheckPath(c.socket); err != nil {
		return c, fmt.Errorf("--socket: %w", err)
	}
	if err := c.logLevel.UnmarshalText([]byte(os.Getenv("RELAY_LOG_LEVEL"))); err != nil && os.Getenv("RELAY_LOG_LEVEL") != "" {
		return c, fmt.Errorf("RELAY_LOG_LEVEL=%q: want debug, info, warn or error", os.Getenv("RELAY_LOG_LEVEL"))
	}
	if c.debugAddr != "" {
		if err := CheckLoopback(c.debugAddr); err != nil {
			return c, fmt.Errorf("--debug-addr: %w", err)
		}
	}
	return c, nil
}

// CheckLoopback accepts HOST:PORT with a loopback IP or "localhost": the
// endpoint serves profiles and counters without authentication.
func CheckLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%s: bad port %q", addr, port)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s: must be a loopback address (127.0.0.1, ::1 or localhost)", addr)
	}
	return nil
}
