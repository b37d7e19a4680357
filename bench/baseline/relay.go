package baseline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/ring"
)

// The original's constants.
const (
	clientQueue = 64  // CLIENT_WRITE_CHANNEL_CAPACITY: frames queued per client writer
	guestQueue  = 256 // the ring writer's channel
	pushTries   = 50  // attempts to push a frame into a full Rx ring, pushPause apart, before it is dropped
	pushPause   = time.Millisecond
)

// drainTimeout bounds how long Run's teardown lets client writers flush what
// is queued (the original aborts instead; flushing is what lets a client see
// the guest's last frames before the end of the stream).
const drainTimeout = 5 * time.Second

// Relay is the goroutine-per-connection relay. Build it with New, call
// WaitReady, then Run; Stop (or cancelling Run's context) stops it.
type Relay struct {
	log    *slog.Logger
	opt    relay.Options
	tx, rx *ring.Ring
	ln     *net.UnixListener
	ready  []byte // the cached core.ready frame, as the guest sent it

	// The client table: the original's Mutex<HashMap<u32, ClientState>>.
	mu      sync.Mutex
	clients map[uint32]*client
	live    map[*client]struct{} // every connection not yet closed, for teardown

	// The original's separate Mutex<HashSet<u32>> of used slots: a slot is
	// taken before the handshake and freed only after the departed client's
	// SIGKILLs are queued.
	slotsMu sync.Mutex
	used    [frame.MaxClients]bool

	toGuest   chan []byte // client readers → guest writer
	shutdowns chan struct{}

	// exec.log tap: protocol id → session, filled by client readers from
	// every ExecRequest, read (and, with a writer, emptied) by the guest
	// reader.
	regMu       sync.Mutex
	registry    map[uint32]sessionInfo
	nextSession atomic.Uint64

	started     atomic.Bool
	acceptEnded chan struct{}
	done        chan struct{} // closed by Stop: every goroutine winds down
	stopOnce    sync.Once
	wakeMu      sync.Mutex
	stopWake    *ring.Wake // wakes the guest reader out of poll; lives as long as Run
	guestEnded  atomic.Bool
	wg          sync.WaitGroup
	writersDone sync.WaitGroup

	stats counters
}

// New binds the client socket as the original does (stale file removed,
// parent directory created) and prepares a relay; clients that connect
// before Run wait in the socket's backlog. Of Options it uses Socket,
// Console, ExecLog, Logger and ReadyTimeout; the rest configure the reactor's
// improvements and are ignored.
func New(o relay.Options) (*Relay, error) {
	if o.Console == nil || o.Console.Tx == nil || o.Console.Rx == nil {
		return nil, errors.New("baseline: Options.Console is required")
	}
	if o.Socket == "" {
		return nil, errors.New("baseline: Options.Socket is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	// The original: remove_file if it exists, create_dir_all, bind. The
	// modes are left to the umask.
	if err := os.Remove(o.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		o.Logger.Warn("remove stale socket", "socket", o.Socket, "err", err)
	}
	if err := os.MkdirAll(filepath.Dir(o.Socket), 0o777); err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: o.Socket, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	ln.SetUnlinkOnClose(false) // Run removes it, after the clients are closed
	o.Logger.Info("agent relay listening", "socket", o.Socket)
	return &Relay{
		log:         o.Logger,
		opt:         o,
		tx:          o.Console.Tx,
		rx:          o.Console.Rx,
		ln:          ln,
		clients:     make(map[uint32]*client),
		live:        make(map[*client]struct{}),
		toGuest:     make(chan []byte, guestQueue),
		shutdowns:   make(chan struct{}, 1),
		registry:    make(map[uint32]sessionInfo),
		done:        make(chan struct{}),
		acceptEnded: make(chan struct{}),
	}, nil
}

// Shutdowns delivers a value each time a client sends core.shutdown: the
// owner should begin drain escalation. Like the original's try_send, a
// notification is dropped while one is still pending.
func (r *Relay) Shutdowns() <-chan struct{} { return r.shutdowns }

// WaitReady reads the guest stream until core.ready, decoding every frame
// before it in full and discarding it, and caches the ready frame for every
// handshake. It fails after Options.ReadyTimeout, when ctx ends, when the
// guest stream ends first, or, as in the original, when a frame before
// core.ready does not decode.
//
// Like the original's wait_ready, it reads into a buffer of its own that it
// drops on return: bytes the guest sent after core.ready that were read in
// the same batch are lost.
func (r *Relay) WaitReady(ctx context.Context) error {
	deadline := time.Now().Add(r.opt.ReadyTimeout)
	var s stream
	for {
		r.tx.DrainData()
		eof := s.fill(r.tx)
		for {
			raw, ok := s.next()
			if !ok {
				break
			}
			m, err := frame.Decode(raw)
			if err != nil {
				return fmt.Errorf("baseline: decode frame before core.ready: %w", err)
			}
			if m.Type == frame.TypeReady {
				r.log.Info("agent relay: received core.ready from the guest")
				r.ready = raw
				if r.opt.ExecLog != nil {
					r.opt.ExecLog.System("--- sandbox started ---")
				}
				return nil
			}
			r.log.Debug("agent relay: discarding pre-ready frame", "type", m.TypeName, "id", m.ID)
		}
		if eof != nil {
			return fmt.Errorf("baseline: guest stream ended before core.ready: %w", eof)
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return errors.New("baseline: timed out waiting for core.ready from the guest")
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("baseline: waiting for core.ready: %w", err)
		}
		if !r.tx.ArmData() {
			continue
		}
		// Short slices keep ctx responsive; the original polls the wake
		// pipe for the whole remaining time.
		wait := min(remaining, 100*time.Millisecond)
		fds := []unix.PollFd{{Fd: int32(r.tx.DataFd()), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int((wait+time.Millisecond-1)/time.Millisecond)); err != nil && err != unix.EINTR {
			return fmt.Errorf("baseline: waiting for core.ready: poll: %w", err)
		}
	}
}

// Run serves clients until Stop, ctx's end, or the end of the guest stream,
// when it returns relay.ErrGuestClosed. On return every goroutine it started
// has ended, every client is closed and the socket is removed.
func (r *Relay) Run(ctx context.Context) error {
	if r.ready == nil {
		return errors.New("baseline: Run called before WaitReady succeeded")
	}
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("baseline: Run called twice")
	}
	w, err := ring.NewWake()
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	// A Stop before this saw no Wake, but closed done first, and the guest
	// reader looks at done before it sleeps.
	r.wakeMu.Lock()
	r.stopWake = w
	r.wakeMu.Unlock()
	r.wg.Add(3)
	go r.acceptLoop()
	go r.guestWriter()
	go r.guestReader()

	select {
	case <-ctx.Done():
		r.Stop()
	case <-r.done:
	}
	r.teardown()
	if r.guestEnded.Load() {
		return relay.ErrGuestClosed
	}
	return nil
}

// Stop makes Run return nil. Safe from any goroutine, any number of times,
// before or during Run.
func (r *Relay) Stop() {
	r.stopOnce.Do(func() {
		close(r.done)
		r.wakeMu.Lock()
		if r.stopWake != nil {
			r.stopWake.Wake()
		}
		r.wakeMu.Unlock()
	})
}

// teardown runs on Run's goroutine once done is closed: the accept loop and
// the guest tasks stop, client writers flush what is queued (bounded by
// drainTimeout), every connection is closed, which ends the client readers,
// and the socket is removed.
func (r *Relay) teardown() {
	r.log.Info("agent relay: shutdown signal received")
	r.ln.Close()
	<-r.acceptEnded // no client is registered after this
	flushBy := time.Now().Add(drainTimeout)
	r.mu.Lock()
	for c := range r.live {
		c.conn.SetWriteDeadline(flushBy) // also bounds a write blocked now
	}
	r.mu.Unlock()
	r.writersDone.Wait()
	r.mu.Lock()
	for c := range r.live {
		c.conn.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	r.wakeMu.Lock()
	r.stopWake.Close()
	r.stopWake = nil
	r.wakeMu.Unlock()
	if err := os.Remove(r.opt.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		r.log.Warn("remove socket", "socket", r.opt.Socket, "err", err)
	}
}
