package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/agentrelay/agentrelay/agent"
	"github.com/agentrelay/agentrelay/execlog"
	"github.com/agentrelay/agentrelay/guest"
	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/ring"
	"github.com/agentrelay/agentrelay/unixsock"
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
	// GuestSocket: it serves a unix: or vsock: guest's socket itself
	// (Options.Guest); otherwise a goroutine pump moves the socket's
	// bytes through a ring.Console.
	GuestSocket bool
}

// Reactor is the production relay.
var Reactor = Impl{Name: "reactor", New: func(o relay.Options) (Server, error) { return relay.New(o) }, BoundedMemory: true, GuestSocket: true}

// Main runs the serve subcommand of the binary prog with impl and returns
// its exit code: 0 after a clean stop, 2 for a bad command line or
// environment, 1 when the relay cannot start or fails. Everything that can
// be checked is checked, and the debug listener bound, before anything is
// created, so a failed start leaves nothing behind.
func Main(prog string, impl Impl, args []string) int {
	c, err := parseConfig(prog, args)
	if errors.Is(err, errHelp) {
		writeHelp(os.Stdout, prog)
		return 0
	}
	if err != nil { // a usage error: everything parseConfig finds is one
		fmt.Fprintf(os.Stderr, "%s serve: %s\nRun '%s serve --help' for the flags.\n", prog, err, prog)
		return 2
	}
	if err := unixsock.Check(c.socket); err != nil {
		fmt.Fprintf(os.Stderr, "%s serve: %v\n", prog, err)
		return 1
	}
	var debugLn net.Listener
	if c.debugAddr != "" {
		if debugLn, err = net.Listen("tcp", c.debugAddr); err != nil {
			fmt.Fprintf(os.Stderr, "%s serve: --debug-addr: %v\n", prog, err)
			return 1
		}
	}
	hopts := &slog.HandlerOptions{Level: c.logLevel}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, hopts)
	if c.logFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, hopts)
	}
	log := slog.New(h)
	slog.SetDefault(log)
	blocked := 2 // the reactor and an in-process guest or pump
	if impl.GuestSocket && c.spec.IsSocket() {
		blocked = 0
	}
	reserveProcs(blocked)
	if err := run(log, c, debugLn, impl); err != nil {
		var se startError
		if errors.As(err, &se) {
			// It never served: say why plainly, as for a bad flag.
			fmt.Fprintf(os.Stderr, "%s serve: %v\n", prog, se.err)
		} else {
			log.Error("relay failed", "err", err)
		}
		return 1
	}
	return 0
}

// startError is a failure before the relay served: the guest could not be
// reached or never became ready, the socket or exec.log could not be made.
type startError struct{ err error }

func (e startError) Error() string { return e.err.Error() }
func (e startError) Unwrap() error { return e.err }

func run(log *slog.Logger, c config, debugLn net.Listener, impl Impl) (err error) {
	serving := false
	defer func() {
		if err != nil && !serving {
			err = startError{err}
		}
	}()
	if debugLn != nil {
		defer debugLn.Close() // if serveDebug never takes it over
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	// Until the guest is ready, a signal or the guest's failure ends the
	// wait (and the dial before it).
	readyCtx, readyCancel := context.WithCancel(ctx)
	defer readyCancel()
	guestDone := make(chan error, 1)
	var signalled atomic.Bool // a signal ended the wait: a clean stop
	go func() {
		select {
		case s := <-sigs:
			log.Info("signal before ready; exiting", "signal", s.String())
			signalled.Store(true)
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

	opts := relay.Options{Socket: c.socket, Logger: log, ReadyTimeout: c.readyTimeout, Handshake: c.handshake,
		AllowUIDs: c.allowUIDs, AcceptWait: c.acceptWait, ClientBuffer: c.clientBuffer, QuarantineTimeout: c.quarantineTimeout,
		OutputBudget: c.outputBudget}
	var console *ring.Console
	if impl.GuestSocket && c.spec.IsSocket() {
		// The fd port: the relay serves the guest's socket from its loop.
		dctx, dcancel := context.WithTimeout(readyCtx, c.readyTimeout)
		f, err := guest.DialFile(dctx, c.spec)
		dcancel()
		if err != nil {
			return fmt.Errorf("guest %s: %w", c.spec, err)
		}
		log.Info("guest console connected", "guest", c.spec.String())
		opts.Guest = f
	} else {
		var err error
		if console, err = ring.NewConsole(0); err != nil {
			return err
		}
		defer console.Close()
		opts.Console = console
	}

	var xl *execlog.Writer
	if c.execLog != "" {
		var err error
		if xl, err = execlog.Open(c.execLog, execlog.Options{}); err != nil {
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
	log.Info("relay starting", "impl", impl.Name, "socket", c.socket, "guest", c.spec.String(), "exec_log", c.execLog)
	if impl.BoundedMemory {
		setMemoryLimit(log, opts, xl)
	}

	if console != nil {
		go func() { guestDone <- startGuest(ctx, log, c.spec, console, c.readyTimeout) }()
		defer func() {
			// The relay is gone: tell an in-process guest there is nothing
			// more to read, and wait for it briefly.
			console.Rx.CloseWrite()
			cancel()
			select {
			case <-guestDone:
			case <-time.After(2 * time.Second):
			}
		}()
	}

	hl := newHealth(guestEnded(console, srv))
	if debugLn != nil {
		stop := serveDebug(log, debugLn, srv, xl, hl)
		defer stop()
		log.Info("debug endpoint", "addr", debugLn.Addr().String())
	}

	err = srv.WaitReady(readyCtx)
	readyCancel()
	if err != nil {
		hl.set("guest never became ready")
		srv.Stop()
		os.Remove(c.socket)
		if signalled.Load() {
			return nil
		}
		return err
	}
	if signalled.Load() {
		// The signal came as the guest became ready: stop as asked.
		srv.Stop()
	}

	go func() {
		var drain <-chan time.Time
		for {
			select {
			case s := <-sigs:
				log.Info("signal received; stopping", "signal", s.String())
				hl.set("relay stopping")
				srv.Stop()
			case <-srv.Shutdowns():
				log.Info("core.shutdown forwarded to the guest; waiting for its stream to end", "deadline", shutdownDrain)
				hl.set("guest shutting down")
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

	hl.set("")
	serving = true
	err = srv.Run(ctx)
	hl.set("relay stopped")
	if errors.Is(err, relay.ErrGuestClosed) {
		log.Info("guest stream ended; relay exiting")
		err = nil
	}
	st := srv.Stats()
	log.Info("relay stopped", "frames_to_guest", st.FramesToGuest, "frames_to_client", st.FramesToClient,
		"clients", st.ClientsAccepted, "evictions", st.Evictions, "protocol_errors", st.ProtocolErrors)
	return err
}

// guestEnded tells whether the guest stream has ended: the console's Tx is
// closed, or, on the fd port, the relay says so.
func guestEnded(console *ring.Console, srv Server) func() bool {
	if console != nil {
		return console.Tx.Closed
	}
	if g, ok := srv.(interface{ GuestEnded() bool }); ok {
		return g.GuestEnded
	}
	return func() bool { return false }
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
