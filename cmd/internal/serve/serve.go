package serve

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/agentrelay/agentrelay/agent"
	"github.com/agentrelay/agentrelay/execlog"
	"github.com/agentrelay/agentrelay/guest"
	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/ring"
)

// Server is the embedding API both relay implementations offer.
type Server interface {
	WaitReady(ctx context.Context) error
	Run(ctx context.Context) error
	Stop()
	Shutdowns() <-chan struct{}
	Stats() relay.Stats
}

// shutdownDrain is how long the binary waits, after a client's core.shutdown
// reached the guest, for the guest stream to end before stopping anyway.
const shutdownDrain = 10 * time.Second

// Impl names a relay implementation and makes one from Options.
type Impl struct {
	Name string
	New  func(relay.Options) (Server, error)
	// BoundedMemory: Options.MemoryBound holds for it, so the runtime's
	// memory limit can be set from it.
	BoundedMemory bool
}

// Reactor is the production relay.
var Reactor = Impl{Name: "reactor", New: func(o relay.Options) (Server, error) { return relay.New(o) }, BoundedMemory: true}

// Main runs the serve subcommand of the binary prog with impl and returns
// its exit code.
func Main(prog string, impl Impl, args []string) int {
	fs := flag.NewFlagSet(prog+" serve", flag.ContinueOnError)
	socket := fs.String("socket", "", "path of the clients' Unix socket (created 0600)")
	guestSpec := fs.String("guest", "", "guest console: unix:PATH | vsock:PATH:PORT | echo | builtin")
	execLog := fs.String("exec-log", "", "directory for exec.log (off if empty)")
	readyTimeout := 60 * time.Second
	fs.Var(DurationFlag{&readyTimeout}, "ready-timeout", "how long to wait for core.ready: seconds (60) or a duration (1500ms)")
	debugAddr := fs.String("debug-addr", "", "serve pprof, expvar and counters on this loopback address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *socket == "" || *guestSpec == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, prog+" serve: --socket and --guest are required")
		fs.Usage()
		return 2
	}
	spec, err := guest.ParseSpec(*guestSpec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s serve: --guest: %v\n", prog, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()}))
	slog.SetDefault(log)
	reserveProcs()
	if err := run(log, *socket, spec, *execLog, readyTimeout, *debugAddr, impl); err != nil {
		log.Error("relay failed", "err", err)
		return 1
	}
	return 0
}

func logLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv("RELAY_LOG_LEVEL"))); err != nil {
		return slog.LevelInfo
	}
	return l
}

func run(log *slog.Logger, socket string, spec guest.Spec, execLogDir string, readyTimeout time.Duration, debugAddr string, impl Impl) error {
	console, err := ring.NewConsole(0)
	if err != nil {
		return err
	}
	defer console.Close()

	opts := relay.Options{Socket: socket, Console: console, Logger: log, ReadyTimeout: readyTimeout}
	var xl *execlog.Writer
	if execLogDir != "" {
		if xl, err = execlog.Open(execLogDir, execlog.Options{}); err != nil {
			return err
		}
		opts.ExecLog = xl
		defer func() {
			if err := xl.Close(); err != nil {
				log.Error("exec.log", "err", err)
			}
		}()
	}

	srv, err := impl.New(opts)
	if err != nil {
		return err
	}
	log.Info("relay starting", "impl", impl.Name, "socket", socket, "guest", spec.String(), "exec_log", execLogDir)
	if impl.BoundedMemory {
		setMemoryLimit(log, opts, xl)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	guestDone := make(chan error, 1)
	go func() { guestDone <- startGuest(ctx, log, spec, console, readyTimeout) }()
	defer func() {
		// The relay is gone: tell an in-process guest there is nothing more
		// to read, and wait for it briefly.
		console.Rx.CloseWrite()
		cancel()
		select {
		case <-guestDone:
		case <-time.After(2 * time.Second):
		}
	}()

	if debugAddr != "" {
		addr, stop, err := serveDebug(debugAddr, srv, xl)
		if err != nil {
			return err
		}
		defer stop()
		log.Info("debug endpoint", "addr", addr)
	}

	readyCtx, readyCancel := context.WithCancel(ctx)
	go func() {
		select {
		case s := <-sigs:
			log.Info("signal before ready; exiting", "signal", s.String())
			readyCancel()
		case err := <-guestDone:
			guestDone <- err
			if err != nil {
				log.Error("guest failed before ready", "err", err)
				readyCancel()
			}
		case <-readyCtx.Done():
		}
	}()
	err = srv.WaitReady(readyCtx)
	readyCancel()
	if err != nil {
		srv.Stop()
		os.Remove(socket)
		return err
	}

	go func() {
		var drain <-chan time.Time
		for {
			select {
			case s := <-sigs:
				log.Info("signal received; stopping", "signal", s.String())
				srv.Stop()
			case <-srv.Shutdowns():
				log.Info("core.shutdown forwarded to the guest; waiting for its stream to end", "deadline", shutdownDrain)
				if drain == nil {
					drain = time.After(shutdownDrain)
				}
			case <-drain:
				log.Warn("guest did not end its stream after core.shutdown; stopping")
				srv.Stop()
			case <-ctx.Done():
				return
			}
		}
	}()

	err = srv.Run(ctx)
	if errors.Is(err, relay.ErrGuestClosed) {
		log.Info("guest stream ended; relay exiting")
		err = nil
	}
	st := srv.Stats()
	log.Info("relay stopped", "frames_to_guest", st.FramesToGuest, "frames_to_client", st.FramesToClient,
		"clients", st.ClientsAccepted, "evictions", st.Evictions, "protocol_errors", st.ProtocolErrors)
	return err
}

// MemoryHeadroom is what the memory limit allows above the relay's and
// exec.log's bounds: the runtime's own structures (stacks, GC metadata, the
// debug endpoint's) and garbage between collections.
const MemoryHeadroom = 32 << 20

// setMemoryLimit turns the reactor's bounded live memory into bounded RSS.
// Without a limit the garbage collector lets the heap reach twice what was
// live after the last collection, so garbage (exec.log lines, log records,
// buffers outgrown) could take the process to about twice the bound.
// GOMEMLIMIT in the environment wins.
func setMemoryLimit(log *slog.Logger, opts relay.Options, xl *execlog.Writer) {
	if os.Getenv("GOMEMLIMIT") != "" {
		log.Info("memory limit from GOMEMLIMIT", "bytes", debug.SetMemoryLimit(-1))
		return
	}
	bound := opts.MemoryBound()
	if xl != nil {
		bound += xl.MemoryBound(2) // the relay's lane and the one System uses
	}
	debug.SetMemoryLimit(bound + MemoryHeadroom)
	log.Info("memory limit", "bound_mib", bound>>20, "headroom_mib", MemoryHeadroom>>20)
}

// startGuest runs the guest side of the console until ctx ends or the guest
// stream does.
func startGuest(ctx context.Context, log *slog.Logger, spec guest.Spec, c *ring.Console, dialTimeout time.Duration) error {
	switch spec.Kind {
	case guest.KindEcho:
		return guest.Echo(ctx, c, guest.DefaultReady())
	case guest.KindBuiltin:
		log.Warn(agent.Warning)
		wd, err := agent.StartWatchdog()
		if err != nil {
			c.Backend().CloseWrite()
			return err
		}
		defer wd.Close()
		return agent.New(agent.Options{Watchdog: wd}).ServeConsole(ctx, c)
	case guest.KindUnix, guest.KindVsock:
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		defer cancel()
		var conn net.Conn
		var err error
		if spec.Kind == guest.KindUnix {
			conn, err = guest.DialUnix(dctx, spec.Path)
		} else {
			conn, err = guest.DialVsock(dctx, spec.Path, spec.Port)
		}
		if err != nil {
			c.Backend().CloseWrite()
			return fmt.Errorf("guest %s: %w", spec, err)
		}
		log.Info("guest console connected", "guest", spec.String())
		if err := guest.Pump(ctx, conn, c); err != nil && ctx.Err() == nil {
			return fmt.Errorf("guest %s: %w", spec, err)
		}
		return nil
	}
	return fmt.Errorf("guest %s: unsupported", spec)
}
