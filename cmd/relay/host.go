//go:build linux

package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/agentrelay/agentrelay/cmd/internal/serve"
	"github.com/agentrelay/agentrelay/host"
	"github.com/agentrelay/agentrelay/unixsock"
)

const hostHelp = `Usage: relay host [--control PATH] [--loops N] [--state FILE]
                  [--max-sandboxes N] [--memory-budget SIZE] [--debug-addr ADDR]

Run the host daemon: one process serving many sandboxes, each a relay with
its own guest console and client socket, from N event loops. Sandboxes are
added and removed through the control API, HTTP/JSON on the Unix socket
--control ('relay sandbox' is its CLI), and kept in the state file, so a
restarted daemon re-attaches to the VMs still running; one whose guest
cannot be reached is listed as guest_gone until it is removed.

Flags:
      --control PATH        the control API's Unix socket (created 0600, its
                            directory 0700); default $RELAY_HOST_CONTROL,
                            else $XDG_RUNTIME_DIR/agentrelay/host.sock, else
                            /run/agentrelay/host.sock
      --loops N             event loops serving the sandboxes (default: one
                            per CPU, here %d)
      --state FILE          where the sandboxes' specs are kept (default:
                            state.json beside the control socket)
      --max-sandboxes N     refuse to hold more than N sandboxes (0: no limit)
      --memory-budget SIZE  bound of what all sandboxes' client buffers may
                            grow by, together: bytes or KiB/MiB/GiB (0: none;
                            each sandbox keeps its own bounds anyway)
      --debug-addr ADDR     serve pprof, /stats, /metrics (per-sandbox series
                            labelled sandbox="NAME") and /healthz on this
                            loopback HOST:PORT
      --log-format FORMAT   log record format on stderr: text or json
  -h, --help                print this help

SIGTERM or SIGINT stops every sandbox (clients closed, sockets removed) and
exits 0, keeping the state file. As root the daemon raises RLIMIT_NOFILE to
fs.nr_open; otherwise its soft limit to the hard one.

Exit status: 0 after SIGTERM or SIGINT; 1 if the daemon cannot start (the
control socket is in use or unsafe, the state file is unreadable, the debug
address is taken); 2 on a usage error.

Examples:
  relay host --control /run/agentrelay/host.sock
  relay host --control /tmp/relay-host/host.sock --loops 2 --debug-addr 127.0.0.1:6061
  relay host --max-sandboxes 1000 --memory-budget 2GiB
`

// hostCmd runs the host daemon until SIGTERM or SIGINT.
func hostCmd(args []string) int {
	fs := flag.NewFlagSet("host", flag.ContinueOnError)
	control := fs.String("control", host.DefaultControl(), "")
	loops := fs.Int("loops", runtime.NumCPU(), "")
	statePath := fs.String("state", "", "")
	maxSandboxes := fs.Int("max-sandboxes", 0, "")
	budget := fs.String("memory-budget", "0", "")
	debugAddr := fs.String("debug-addr", "", "")
	logFormat := fs.String("log-format", "text", "")
	if code := parse(fs, "host", fmt.Sprintf(hostHelp, runtime.NumCPU()), args); code >= 0 {
		return code
	}
	var budgetBytes int64
	var err error
	switch {
	case fs.NArg() > 0:
		return usageError("host", "unexpected argument %q", fs.Arg(0))
	case *loops < 1 || *loops > 1024:
		return usageError("host", "--loops %d: want 1 to 1024", *loops)
	case *maxSandboxes < 0:
		return usageError("host", "--max-sandboxes %d: want 0 (no limit) or more", *maxSandboxes)
	case *logFormat != "text" && *logFormat != "json":
		return usageError("host", "--log-format %q: want text or json", *logFormat)
	}
	if *budget != "0" {
		if budgetBytes, err = serve.ParseSize(*budget); err != nil {
			return usageError("host", "--memory-budget %s: %v", *budget, err)
		}
	}
	if err := unixsock.CheckPath(*control); err != nil {
		return usageError("host", "--control: %v", err)
	}
	if *debugAddr != "" {
		if err := serve.CheckLoopback(*debugAddr); err != nil {
			return usageError("host", "--debug-addr: %v", err)
		}
	}
	if *statePath == "" {
		*statePath = filepath.Join(filepath.Dir(*control), "state.json")
	}
	if *control, err = filepath.Abs(*control); err != nil {
		return usageError("host", "--control: %v", err)
	}
	if err := unixsock.Check(*control); err != nil {
		fmt.Fprintf(os.Stderr, "relay host: --control: %v\n", err)
		return exitFailure
	}
	var debugLn net.Listener
	if *debugAddr == "" {
		// Nobody can read a heap profile without the debug endpoint: do
		// not sample one. Its buckets, one per allocation site seen, are
		// memory the daemon would keep after a burst of sandboxes.
		runtime.MemProfileRate = 0
	} else {
		if debugLn, err = net.Listen("tcp", *debugAddr); err != nil {
			fmt.Fprintf(os.Stderr, "relay host: --debug-addr: %v\n", err)
			return exitFailure
		}
		defer debugLn.Close()
	}

	var h slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	if *logFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, nil)
	}
	log := slog.New(h)
	slog.SetDefault(log)
	if soft, hard, err := host.RaiseNoFile(); err != nil {
		log.Warn("descriptor limit", "soft", soft, "hard", hard, "err", err)
	} else {
		log.Info("descriptor limit", "soft", soft, "hard", hard)
	}

	// The control socket's directory holds the state file: make it as
	// Listen would, before the state file is read there.
	if err := os.MkdirAll(filepath.Dir(*control), 0o700); err != nil {
		fmt.Fprintf(os.Stderr, "relay host: --control: %v\n", err)
		return exitFailure
	}
	d, err := host.New(host.Options{Loops: *loops, MaxSandboxes: *maxSandboxes, MemoryBudget: budgetBytes,
		StatePath: *statePath, ControlSocket: *control, Logger: log})
	if err != nil {
		fmt.Fprintf(os.Stderr, "relay host: %v\n", err)
		return exitFailure
	}
	ln, err := host.ListenControl(*control)
	if err != nil {
		d.Close()
		fmt.Fprintf(os.Stderr, "relay host: --control: %v\n", err)
		return exitFailure
	}
	served := make(chan error, 1)
	go func() { served <- d.Serve(ln) }()
	if debugLn != nil {
		stop := serveHostDebug(log, debugLn, d)
		defer stop()
		log.Info("debug endpoint", "addr", debugLn.Addr().String())
	}
	log.Info("host daemon serving", "control", *control, "state", *statePath, "loops", *loops,
		"max_sandboxes", *maxSandboxes, "memory_budget", budgetBytes, "sandboxes", len(d.List()))

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	code := 0
	select {
	case s := <-sigs:
		log.Info("signal received; stopping every sandbox", "signal", s.String())
	case err := <-served:
		log.Error("control API stopped", "err", err)
		code = exitFailure
	}
	ln.Close()
	os.Remove(*control)
	d.Close()
	log.Info("host daemon stopped; state kept", "state", *statePath)
	return code
}

// serveHostDebug serves pprof, expvar, the host's /stats and /metrics, and
// /healthz (200 while the daemon runs) on ln.
func serveHostDebug(log *slog.Logger, ln net.Listener, d *host.Host) (stop func()) {
	healthy := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	return serve.ServeDebug(log, ln, d.StatsHandler(), d.Collector(), healthy)
}
