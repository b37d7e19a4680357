package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/agentrelay/agentrelay/frame"
)

// ErrClosed is what pending and later calls see once Close was called.
var ErrClosed = newError("connection closed")

// ErrDisconnected is wrapped by the error that ends a connection the relay
// closed between two frames. It deliberately is not io.EOF, which a Stream
// returns for its own, orderly end. A close inside a frame wraps
// io.ErrUnexpectedEOF instead.
var ErrDisconnected = errors.New("relay closed the connection")

// ErrClosedBeforeHandshake is what Dial returns when the relay closed the
// connection before sending the first byte of the handshake. A relay does
// that when all frame.MaxClients slots stayed busy for as long as it lets a
// connection wait (or its wait queue is full), when the guest never became
// ready (the relay exits, resetting the connections in its backlog), and
// when it does not allow the peer's uid. Its log says which.
var ErrClosedBeforeHandshake = newError(fmt.Sprintf(
	"the relay closed the connection before the handshake: all %d client slots busy, the guest not ready or this user not allowed (see the relay's log)",
	frame.MaxClients))

var (
	errRaw   = newError("raw connection has no demultiplexer (use Dial)")
	errDemux = newError("ReadFrame needs a raw connection (use DialRaw): the demultiplexer owns the read side")
)

// readBufferSize batches small frames into few read syscalls; big frames
// bypass it (bufio reads straight into the destination when it is empty).
const readBufferSize = 64 << 10

// A Conn is one client connection to the relay: one slot, one id range.
// Its methods are safe for concurrent use, except ReadFrame (one reader).
type Conn struct {
	nc    *net.UnixConn
	r     *bufio.Reader
	start uint32
	step  uint32 // the slot's id range: 0.4's or 0.5's step
	form  string // "0.4" or "0.5"

	ready    frame.Ready
	readyRaw []byte

	// next counts allocations; 64 bits so that it never wraps, which keeps
	// the modulo in NextID continuous (2^32 is not a multiple of Step-1).
	next atomic.Uint64

	wmu  sync.Mutex
	wbuf []byte

	demux   bool
	mu      sync.Mutex
	subs    map[uint32]*Stream
	live    atomic.Int64 // len(subs), readable without mu
	err     error        // why the reader stopped; set once, under mu
	done    chan struct{}
	closing chan struct{}
	once    sync.Once
	dropped atomic.Uint64
}

// Dial connects to the relay's socket, performs the handshake within ctx's
// deadline and starts the reader goroutine that feeds Subscribe, Request
// and Exec.
func Dial(ctx context.Context, socketPath string) (*Conn, error) {
	c, err := dial(ctx, socketPath)
	if err != nil {
		return nil, err
	}
	c.demux = true
	c.subs = make(map[uint32]*Stream)
	go c.readLoop()
	return c, nil
}

// DialRaw is Dial without the reader goroutine: the caller reads with
// ReadFrame and nothing is demultiplexed. Subscribe, Request and Exec fail
// on a raw Conn. Meant for benchmarks and protocol tests.
func DialRaw(ctx context.Context, socketPath string) (*Conn, error) {
	c, err := dial(ctx, socketPath)
	if err != nil {
		return nil, err
	}
	close(c.done) // no reader will ever run
	return c, nil
}

func dial(ctx context.Context, socketPath string) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, errorf("%w", err)
	}
	c := &Conn{
		nc:      nc.(*net.UnixConn),
		r:       bufio.NewReaderSize(nc, readBufferSize),
		done:    make(chan struct{}),
		closing: make(chan struct{}),
	}
	if err := c.handshake(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// handshake reads either form (../shared/PROTOCOL-GENERATIONS.md), as
// upstream's Rust client does: 0.5's [id_start u32 BE][id_end_exclusive u32
// BE], recognised by its shape, or 0.4's [offset u32 BE]; then the core.ready
// frame. No 0.4 greeting has 0.5's shape: a 0.4 offset k·⌊(2³²−1)/16⌋ is never
// 1 past a multiple of the 0.5 step for k < 16.
func (c *Conn) handshake(ctx context.Context) (err error) {
	dl, hasDeadline := ctx.Deadline()
	if hasDeadline {
		c.nc.SetDeadline(dl)
	}
	// A cancel without a deadline must still interrupt a silent relay.
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		switch {
		case !stop():
			// The cancel ran, or is running: its deadline may land after
			// any reset, so the connection is unusable either way.
			if err == nil {
				err = errorf("handshake: %w", ctx.Err())
			} else {
				err = errorf("%w: %w", err, ctx.Err())
			}
		case err != nil && hasDeadline && errors.Is(err, os.ErrDeadlineExceeded):
			// The socket's copy of ctx's deadline fired first.
			err = errorf("%w: %w", err, context.DeadlineExceeded)
		}
		c.nc.SetDeadline(time.Time{})
	}()

	p, err := c.r.Peek(frame.HandshakeSize05)
	if len(p) < 4 {
		// A relay that does not admit a connection closes it without a
		// byte; one that exits before ready leaves it in the listen
		// backlog, which the kernel then resets.
		if len(p) == 0 && (err == io.EOF || errors.Is(err, syscall.ECONNRESET)) {
			return ErrClosedBeforeHandshake
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return errorf("handshake: reading id offset: %w", err)
	}
	a := binary.BigEndian.Uint32(p)
	var start, step uint32
	if len(p) == frame.HandshakeSize05 && a%frame.Step05 == 1 && a/frame.Step05 < frame.MaxClients05 && binary.BigEndian.Uint32(p[4:]) == a-1+frame.Step05 {
		start, step, c.form = a-1, frame.Step05, "0.5"
		c.r.Discard(frame.HandshakeSize05)
	} else {
		if a%frame.Step != 0 || a/frame.Step >= frame.MaxClients {
			return errorf("handshake: id offset %d is not a slot boundary (k*%d, k < %d)", a, frame.Step, frame.MaxClients)
		}
		start, step, c.form = a, frame.Step, "0.4"
		c.r.Discard(frame.HandshakeSize04)
	}
	raw, err := c.readFrame(nil)
	if err != nil {
		return errorf("handshake: reading core.ready: %w", err)
	}
	m, err := frame.Decode(raw)
	if err != nil {
		return errorf("handshake: decoding core.ready: %w", err)
	}
	if m.Type != frame.TypeReady {
		return errorf("handshake: got %q where core.ready was due", m.TypeName)
	}
	if err := m.Into(&c.ready); err != nil {
		return errorf("handshake: core.ready payload: %w", err)
	}
	c.start, c.step, c.readyRaw = start, step, raw
	return nil
}

// Handshake is the form the relay spoke: "0.4" or "0.5".
func (c *Conn) Handshake() string { return c.form }

// Slot is the relay slot this connection occupies: 0..15 in the 0.4 form,
// 0..127 in the 0.5 form.
func (c *Conn) Slot() int { return int(c.start / c.step) }

// Range is the slot's id range [start, end). NextID hands out start+1 ..
// end-1: start itself is skipped so that slot 0 never uses the reserved id 0.
func (c *Conn) Range() (start, end uint32) { return c.start, c.start + c.step }

// Ready is the guest's core.ready payload, as received in the handshake.
func (c *Conn) Ready() frame.Ready { return c.ready }

// ReadyFrame is the core.ready frame exactly as the relay sent it, length
// prefix included. The caller must not modify it.
func (c *Conn) ReadyFrame() []byte { return c.readyRaw }

// NextID allocates a correlation id in this connection's range, wrapping
// around inside it and skipping ids that a live Stream still holds.
func (c *Conn) NextID() uint32 {
	for {
		n := c.next.Add(1) - 1
		id := c.start + 1 + uint32(n%uint64(c.step-1))
		if !c.inUse(id) {
			return id
		}
	}
}

func (c *Conn) inUse(id uint32) bool {
	if c.live.Load() == 0 {
		return false
	}
	c.mu.Lock()
	_, ok := c.subs[id]
	c.mu.Unlock()
	return ok
}

// WriteFrame writes raw, one or more whole frames, in a single write that
// no concurrent Send or WriteFrame interleaves with. raw is not validated.
func (c *Conn) WriteFrame(raw []byte) error {
	c.wmu.Lock()
	_, err := c.nc.Write(raw)
	c.wmu.Unlock()
	if err != nil {
		return errorf("write: %w", c.closedErr(err))
	}
	return nil
}

// maxKeptWriteBuffer bounds the encode buffer kept between Sends, so that
// one large payload does not pin megabytes for the Conn's lifetime.
const maxKeptWriteBuffer = 256 << 10

// Send encodes payload as a message of type t under id (flags from t.Flags)
// and writes it. Like all writes it blocks while the relay applies
// back-pressure; Close unblocks it.
func (c *Conn) Send(id uint32, t frame.Type, payload any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b, err := frame.AppendMessage(c.wbuf[:0], id, t, payload)
	if err != nil {
		return errorf("encoding %s: %w", t, err)
	}
	if cap(b) <= maxKeptWriteBuffer {
		c.wbuf = b
	}
	if _, err := c.nc.Write(b); err != nil {
		return errorf("sending %s id %d: %w", t, id, c.closedErr(err))
	}
	return nil
}

// ReadFrame reads the next whole frame into buf, or into a new buffer if
// buf is too small, and returns a view of it. It is only for raw
// connections (DialRaw): on a demultiplexed Conn the reader goroutine owns
// the read side and ReadFrame fails. Not safe for concurrent use.
func (c *Conn) ReadFrame(buf []byte) (frame.Frame, error) {
	if c.demux {
		return frame.Frame{}, errDemux
	}
	raw, err := c.readFrame(buf)
	if err != nil {
		if err = c.closedErr(err); err == ErrClosed {
			return frame.Frame{}, err
		}
		return frame.Frame{}, errorf("%w", err)
	}
	return frame.Split(raw)
}

// readFrame reads one whole frame, validating its length before reading
// (or allocating) the body.
func (c *Conn) readFrame(buf []byte) ([]byte, error) {
	p, err := c.r.Peek(frame.LenSize)
	if err != nil {
		if len(p) == 0 {
			if errors.Is(err, io.EOF) {
				return nil, ErrDisconnected
			}
			return nil, err
		}
		return nil, midFrame(len(p), frame.LenSize, err)
	}
	n, err := frame.Len(p)
	if err != nil {
		return nil, fmt.Errorf("bad frame length: %w", err)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if got, err := io.ReadFull(c.r, buf); err != nil {
		return nil, midFrame(got, n, err)
	}
	return buf, nil
}

func midFrame(got, want int, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("connection lost mid-frame (%d of %d bytes): %w", got, want, err)
}

// closedErr turns the socket's "use of closed network connection" after
// our own Close into ErrClosed, which says who closed it.
func (c *Conn) closedErr(err error) error {
	select {
	case <-c.closing:
		if errors.Is(err, net.ErrClosed) {
			return ErrClosed
		}
	default:
	}
	return err
}

// Dropped counts incoming frames nobody was subscribed to (unknown ids, or
// Streams closed before their frames arrived).
func (c *Conn) Dropped() uint64 { return c.dropped.Load() }

// Done is closed when the reader goroutine has stopped (at once for a raw
// Conn); Err then says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the reader stopped, or nil while it runs.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the socket. Pending Recv calls and blocked Sends return
// errors; once Close returns the reader goroutine has exited.
func (c *Conn) Close() error {
	var err error
	c.once.Do(func() {
		close(c.closing)
		err = c.nc.Close()
	})
	<-c.done
	return err
}
