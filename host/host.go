package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/bufpool"
	"github.com/agentrelay/agentrelay/execlog"
	"github.com/agentrelay/agentrelay/guest"
	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/unixsock"
)

// Options configures a Host. Zero values take the defaults on each field.
type Options struct {
	// Loops is how many relay.Loops serve the sandboxes, each on its own
	// goroutine (and, once it runs, OS thread). Default runtime.NumCPU().
	Loops int
	// MaxSandboxes bounds the sandboxes the daemon holds, in any state.
	// 0: no bound.
	MaxSandboxes int
	// MemoryBudget bounds what every sandbox's client buffers may grow by,
	// together, above each sandbox's own OutputBudget and InputBudget.
	// 0: no host-wide bound.
	MemoryBudget int64
	// StatePath is the state file; "" keeps no state.
	StatePath string
	// ControlSocket is the control API's socket, which no sandbox may use.
	ControlSocket string
	// DialTimeout bounds how long an Add waits for its guest's socket to
	// accept (within the sandbox's ready timeout). Default 10 s.
	DialTimeout time.Duration
	// RestoreDialTimeout bounds the same wait for a sandbox restored from
	// the state file: its VM was running, so a guest that does not answer
	// at once is gone. Default 2 s.
	RestoreDialTimeout time.Duration
	// Relay is the template of every sandbox's relay.Options: budgets,
	// allow-list, timeouts. Socket, Guest, ExecLog, Handshake,
	// ReadyTimeout, Logger, Pool and Budget are set per sandbox.
	Relay relay.Options
	// PoolIdle bounds each loop's idle buffers (relay.LoopOptions).
	PoolIdle int64
	// Logger receives the daemon's records; each sandbox's carry its name.
	// Default slog.Default().
	Logger *slog.Logger
}

// Host is the daemon's machinery: its loops, its sandboxes by name, its
// state file. Its methods are safe for concurrent use and never run on a
// loop's thread.
type Host struct {
	opt    Options
	log    *slog.Logger
	loops  []*relay.Loop
	loopWG sync.WaitGroup
	// runners write the exec.logs of each loop's sandboxes, one goroutine
	// a loop.
	runners []*execlog.Runner
	// removed wakes the trimmer (trim.go) after a sandbox is removed.
	removed chan struct{}
	trims   atomic.Uint64
	budget  *bufpool.Budget

	placeMu   sync.Mutex // placement: a count read and the Add it decides
	persister persister

	mu       sync.Mutex
	boxes    map[string]*sandbox
	adding   map[string]bool   // names whose Add is under way
	sockets  map[string]string // client socket → the sandbox holding it
	execLogs map[string]string // exec.log directory → the sandbox holding it
	closed   bool
	inflight sync.WaitGroup // Adds and Removes under way, for Close
	// stopping ends the dials of Adds under way when the daemon closes.
	stopping context.Context
	stop     context.CancelFunc
}

// New starts the loops and, if Options.StatePath names an existing file,
// restores the sandboxes it lists. A state file that cannot be read is an
// error: the daemon must not start empty and then overwrite it.
func New(o Options) (*Host, error) {
	if o.Loops <= 0 {
		o.Loops = runtime.NumCPU()
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.RestoreDialTimeout <= 0 {
		o.RestoreDialTimeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var saved []savedSandbox
	if o.StatePath != "" {
		var err error
		if saved, err = readState(o.StatePath); err != nil {
			return nil, err
		}
	}
	h := &Host{opt: o, log: o.Logger, boxes: map[string]*sandbox{}, adding: map[string]bool{},
		sockets: map[string]string{}, execLogs: map[string]string{}}
	h.stopping, h.stop = context.WithCancel(context.Background())
	h.removed = make(chan struct{}, 1)
	go h.trimmer(trimQuiet)
	if o.MemoryBudget > 0 {
		h.budget = bufpool.NewBudget(o.MemoryBudget, nil)
	}
	for i := range o.Loops {
		l, err := relay.NewLoop(relay.LoopOptions{Index: i, Logger: o.Logger.With("loop", i), PoolIdle: o.PoolIdle})
		if err != nil {
			h.stop()
			h.stopLoops()
			h.closeRunners()
			return nil, err
		}
		h.loops = append(h.loops, l)
		h.runners = append(h.runners, execlog.NewRunner())
		h.loopWG.Add(1)
		go func() {
			defer h.loopWG.Done()
			if err := l.Run(); err != nil {
				h.log.Error("loop failed", "loop", i, "err", err)
			}
		}()
	}
	h.restore(saved)
	return h, nil
}

// Loops is how many loops serve the sandboxes.
func (h *Host) Loops() int { return len(h.loops) }

// Budget is the host-wide budget, nil without Options.MemoryBudget.
func (h *Host) Budget() *bufpool.Budget { return h.budget }

// Add creates sandbox name from spec: it dials the guest (within the
// sandbox's ready timeout and Options.DialTimeout), opens exec.log, and
// places the relay on the least-loaded loop. It returns once the client
// socket listens; the relay then waits for core.ready on its loop. On error
// nothing is left behind.
func (h *Host) Add(ctx context.Context, name string, spec Spec) (Info, error) {
	if err := CheckName(name); err != nil {
		return Info{}, err
	}
	c, err := spec.parse()
	if err != nil {
		return Info{}, err
	}
	sb, err := h.add(ctx, name, c, nil)
	if err != nil {
		return Info{}, err
	}
	return sb.info(), nil
}

// add is Add once the spec is parsed; tmpl, if set, replaces
// Options.Relay, and its Guest the dial.
func (h *Host) add(ctx context.Context, name string, c config, tmpl *relay.Options) (*sandbox, error) {
	if err := h.reserve(name, c); err != nil {
		return nil, err
	}
	defer h.inflight.Done()
	sb, err := h.create(ctx, name, c, h.opt.DialTimeout, tmpl)
	if err != nil {
		h.unreserve(name, c)
		return nil, err
	}
	h.mu.Lock()
	delete(h.adding, name)
	h.boxes[name] = sb
	h.mu.Unlock()
	if err := h.persist(); err != nil {
		sb.close()
		h.forget(sb)
		return nil, fmt.Errorf("sandbox %s not added: %w", name, err)
	}
	h.log.Info("sandbox added", "sandbox", name, "guest", c.spec.Guest, "socket", c.spec.Socket, "loop", sb.loop)
	return sb, nil
}

// reserve claims name, its socket and its exec.log directory for an Add,
// or says why they cannot be had.
func (h *Host) reserve(name string, c config) error {
	if c.spec.Socket == h.opt.ControlSocket {
		return kindf(ErrInvalid, "socket "+c.spec.Socket+" is the daemon's control socket")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return ErrClosed
	case h.boxes[name] != nil && h.boxes[name].removing:
		return withKind(ErrConflict, fmt.Errorf("sandbox %s is being removed", name))
	case h.boxes[name] != nil:
		return withKind(ErrConflict, fmt.Errorf("sandbox %s exists; remove it first", name))
	case h.adding[name]:
		return withKind(ErrConflict, fmt.Errorf("sandbox %s is being added", name))
	case h.opt.MaxSandboxes > 0 && len(h.boxes)+len(h.adding) >= h.opt.MaxSandboxes:
		return withKind(ErrLimit, fmt.Errorf("the daemon holds %d sandboxes, its --max-sandboxes", h.opt.MaxSandboxes))
	case h.sockets[c.spec.Socket] != "":
		return withKind(ErrConflict, fmt.Errorf("socket %s is sandbox %s's", c.spec.Socket, h.sockets[c.spec.Socket]))
	case c.spec.ExecLog != "" && h.execLogs[c.spec.ExecLog] != "":
		return withKind(ErrConflict, fmt.Errorf("exec_log %s is sandbox %s's", c.spec.ExecLog, h.execLogs[c.spec.ExecLog]))
	}
	h.adding[name] = true
	h.sockets[c.spec.Socket] = name
	if c.spec.ExecLog != "" {
		h.execLogs[c.spec.ExecLog] = name
	}
	h.inflight.Add(1)
	return nil
}

func (h *Host) unreserve(name string, c config) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.adding, name)
	delete(h.sockets, c.spec.Socket)
	if c.spec.ExecLog != "" {
		delete(h.execLogs, c.spec.ExecLog)
	}
}

// forget drops sb from the registry once it has finished.
func (h *Host) forget(sb *sandbox) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.boxes[sb.name] == sb {
		delete(h.boxes, sb.name)
	}
	delete(h.adding, sb.name)
	delete(h.sockets, sb.c.spec.Socket)
	if sb.c.spec.ExecLog != "" {
		delete(h.execLogs, sb.c.spec.ExecLog)
	}
}

// create checks the socket, dials the guest (unless tmpl carries one) and
// starts the relay. It leaves nothing behind when it fails.
func (h *Host) create(ctx context.Context, name string, c config, dialTimeout time.Duration, tmpl *relay.Options) (*sandbox, error) {
	if err := unixsock.Check(c.spec.Socket); err != nil {
		return nil, socketError(err)
	}
	// A descriptor to spare before dialling: without one the dial's retry
	// loop would spend the whole timeout on EMFILE.
	if fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
		if isNoFD(err) {
			return nil, noFD("sandbox "+name, err)
		}
	} else {
		unix.Close(fd)
	}
	o := h.opt.Relay
	if tmpl != nil {
		o = *tmpl
	}
	if o.Guest == nil {
		dctx, cancel := context.WithTimeout(ctx, min(c.readyTimeout, dialTimeout))
		unhook := context.AfterFunc(h.stopping, cancel)
		f, err := guest.DialFile(dctx, c.guest)
		unhook()
		cancel()
		if err != nil {
			if isNoFD(err) {
				return nil, noFD("guest "+c.spec.Guest, err)
			}
			return nil, withKind(ErrGuest, fmt.Errorf("guest %s: %w", c.spec.Guest, err))
		}
		o.Guest = f
	}
	sb, err := h.launch(name, c, o)
	if err != nil {
		// The relay owns the file only once it is added; closing twice is
		// harmless if it had already taken and closed it.
		o.Guest.Close()
	}
	return sb, err
}

// launch places the relay, opening its exec.log with the chosen loop's
// Runner; o.Guest is set.
func (h *Host) launch(name string, c config, o relay.Options) (*sandbox, error) {
	sb := &sandbox{name: name, c: c, loop: -1}
	log := h.log.With("sandbox", name)
	o.Socket, o.Handshake, o.ReadyTimeout, o.Logger = c.spec.Socket, c.handshake, c.readyTimeout, log
	o.Budget, o.Pool = h.budget, nil
	// The count read and the Add it decides go together, or a burst of
	// PUTs would all pick the same loop.
	h.placeMu.Lock()
	best := 0
	for i, l := range h.loops {
		if l.Relays() < h.loops[best].Relays() {
			best = i
		}
	}
	if c.spec.ExecLog != "" && o.ExecLog == nil {
		// The loop's own Runner: a sandbox's exec output is handed over
		// without touching anything another loop touches.
		xl, err := execlog.Open(c.spec.ExecLog, execlog.Options{Runner: h.runners[best]})
		if err != nil {
			h.placeMu.Unlock()
			if isNoFD(err) {
				return nil, noFD("exec_log", err)
			}
			return nil, withKind(ErrInvalid, fmt.Errorf("exec_log: %w", err))
		}
		sb.xl, o.ExecLog = xl, xl
		// exec.log's buffers and file go as soon as the relay has
		// finished, guest gone or not, not when the entry is removed.
		o.OnDone = func() { sb.closeLog(log) }
	}
	r, err := h.loops[best].Add(o)
	h.placeMu.Unlock()
	if err != nil {
		sb.closeLog(log)
		return nil, socketError(err)
	}
	sb.r, sb.loop, sb.log = r, best, log
	return sb, nil
}

// socketError gives a failure to make the client socket its kind.
func socketError(err error) error {
	switch {
	case errors.Is(err, unixsock.ErrInUse):
		return withKind(ErrConflict, err)
	case isNoFD(err):
		return noFD("socket", err)
	case errors.Is(err, ErrClosed):
		return err
	}
	return withKind(ErrInvalid, err)
}

// Remove ends sandbox name: its clients are closed and their sessions
// killed in the guest, its socket removed, exec.log flushed and closed, its
// entry dropped from the state file. It returns once all that is done.
func (h *Host) Remove(name string) error {
	h.mu.Lock()
	sb := h.boxes[name]
	switch {
	case sb == nil:
		h.mu.Unlock()
		return withKind(ErrNotFound, fmt.Errorf("no sandbox %s", name))
	case sb.removing:
		h.mu.Unlock()
		return withKind(ErrConflict, fmt.Errorf("sandbox %s is being removed", name))
	}
	sb.removing = true
	h.inflight.Add(1)
	h.mu.Unlock()
	defer h.inflight.Done()
	sb.close()
	h.forget(sb)
	h.log.Info("sandbox removed", "sandbox", name)
	select {
	case h.removed <- struct{}{}:
	default:
	}
	if err := h.persist(); err != nil {
		return fmt.Errorf("sandbox %s removed, but %w", name, err)
	}
	return nil
}

// Get returns sandbox name's Info.
func (h *Host) Get(name string) (Info, error) {
	h.mu.Lock()
	sb := h.boxes[name]
	h.mu.Unlock()
	if sb == nil {
		return Info{}, withKind(ErrNotFound, fmt.Errorf("no sandbox %s", name))
	}
	return sb.info(), nil
}

// List returns every sandbox's Info, by name.
func (h *Host) List() []Info {
	boxes := h.sandboxes()
	out := make([]Info, len(boxes))
	for i, sb := range boxes {
		out[i] = sb.info()
	}
	return out
}

// sandboxes returns the registry's entries sorted by name.
func (h *Host) sandboxes() []*sandbox {
	h.mu.Lock()
	boxes := make([]*sandbox, 0, len(h.boxes))
	for _, sb := range h.boxes {
		boxes = append(boxes, sb)
	}
	h.mu.Unlock()
	slices.SortFunc(boxes, func(a, b *sandbox) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	return boxes
}

// Close stops every loop, which closes every sandbox (clients closed,
// sockets removed), flushes every exec.log, and keeps the state file as it
// is, so a restarted daemon restores the same sandboxes. Adds and Removes
// under way finish first.
func (h *Host) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	h.mu.Unlock()
	h.stop()
	h.inflight.Wait()
	h.stopLoops()
	for _, sb := range h.sandboxes() {
		sb.closeLog(h.log)
	}
	h.closeRunners()
}

func (h *Host) closeRunners() {
	for _, r := range h.runners {
		r.Close()
	}
}

func (h *Host) stopLoops() {
	for _, l := range h.loops {
		l.Stop()
	}
	h.loopWG.Wait()
}

// restore adds the sandboxes of the state file, dialling their guests a
// few at a time. A sandbox that cannot be started stays, in guest_gone
// with the reason, so its entry is kept until it is removed.
func (h *Host) restore(saved []savedSandbox) {
	if len(saved) == 0 {
		return
	}
	start := time.Now()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for _, s := range saved {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			h.restoreOne(s)
		}()
	}
	wg.Wait()
	n := 0
	for _, sb := range h.sandboxes() {
		if sb.r != nil {
			n++
		}
	}
	h.log.Info("sandboxes restored", "state", h.opt.StatePath, "sandboxes", len(saved), "attached", n, "after", time.Since(start).Round(time.Millisecond))
}

func (h *Host) restoreOne(s savedSandbox) {
	log := h.log.With("sandbox", s.Name)
	c, err := s.Spec.parse()
	if err == nil {
		err = CheckName(s.Name)
	}
	var sb *sandbox
	if err == nil {
		sb, err = h.create(context.Background(), s.Name, c, h.opt.RestoreDialTimeout, nil)
	}
	if err != nil {
		log.Warn("sandbox not restored; kept as guest_gone", "err", err)
		// A socket its dead predecessor left behind goes too: clients
		// should find nothing rather than a socket no one serves.
		if c.spec.Socket != "" {
			if stale, _ := unixsock.Probe(c.spec.Socket); stale {
				os.Remove(c.spec.Socket)
			}
		}
		if c.spec.Guest == "" {
			c.spec = s.Spec
		}
		sb = &sandbox{name: s.Name, c: c, loop: -1, startErr: err}
	} else {
		log.Info("sandbox restored", "guest", c.spec.Guest, "socket", c.spec.Socket, "loop", sb.loop)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.boxes[s.Name] = sb
	if c.spec.Socket != "" {
		h.sockets[c.spec.Socket] = s.Name
	}
	if c.spec.ExecLog != "" {
		h.execLogs[c.spec.ExecLog] = s.Name
	}
}
