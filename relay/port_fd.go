package relay

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/bufpool"
	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/reactor"
)

const (
	// guestBuffer is the fd port's read buffer as allocated; it grows (up
	// to frame.MaxFrame) only for a frame larger than itself.
	guestBuffer = 256 << 10
	// minGuestRead is the least free space a read is offered before the
	// partial frame at the buffer's head is moved to its start: reads into
	// a sliver of space would cost a syscall per few bytes.
	minGuestRead = 64 << 10
)

// fdPort serves a guest whose console is a connected stream socket, from the
// loop itself. Guest bytes are read into in, and frames are routed as views
// of it: nothing moves them until the next fill, which is when the relay has
// written out (or queued) every view it handed to a client. Host→guest
// bytes go out with writev straight from the clients' input buffers.
//
// in is lent by the loop's pool for a read and given back (settle) when the
// read it was taken for finds nothing, or at the relay's sweep once empty,
// so an idle guest holds no buffer: on a loop of many sandboxes the buffer
// one just used is the next one's.
type fdPort struct {
	fd       int // the relay's own descriptor, in no poller but the loop's
	r        *Relay
	loop     *reactor.Loop
	tok      reactor.Token
	watched  bool
	outArmed bool // EPOLLOUT is in the registration
	pool     *bufpool.Pool

	in   []byte // nil while nothing is buffered
	head int    // in[head:tail] is unparsed guest bytes
	tail int

	// hup records that epoll reported the guest's hang-up; that edge may
	// come with the last bytes, so after it the socket is read until EOF
	// whatever a short read says.
	hup  bool
	eof  bool // the guest's stream ended (EOF or a read error)
	gone bool // the guest refused a write: nothing more can reach it
}

// newFdPort takes ownership of f, a connected stream socket: it keeps a
// duplicate of its descriptor, non-blocking, and closes f. An *os.File made
// from a non-blocking descriptor (net.UnixConn.File gives one) is
// registered with Go's own netpoller, which would then wake on every edge of
// the guest's socket and make the runtime's threads spin: three system
// calls and two context switches per round trip for nothing. Closing f takes
// it out of that poller, and no finalizer can close the descriptor under
// the loop.
func newFdPort(f *os.File, pool *bufpool.Pool) (*fdPort, error) {
	defer f.Close()
	sc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("guest socket: %w", err)
	}
	fd := -1
	var derr error
	if err := sc.Control(func(u uintptr) { fd, derr = unix.FcntlInt(u, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, fmt.Errorf("guest socket: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("guest socket: dup: %w", derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("guest socket: %w", err)
	}
	return &fdPort{fd: fd, pool: pool}, nil
}

func (p *fdPort) bind(r *Relay) { p.r = r }

func (p *fdPort) register(l *reactor.Loop) error {
	tok, err := l.Add(p.fd, guestEvents, guestHandler{p})
	if err != nil {
		return fmt.Errorf("watch guest socket: %w", err)
	}
	p.loop, p.tok, p.watched = l, tok, true
	return nil
}

func (p *fdPort) deregister(l *reactor.Loop) {
	if p.watched {
		l.Remove(p.tok)
		p.watched = false
	}
}

func (p *fdPort) holds() bool { return p.in != nil }

// settle gives the read buffer back when nothing in it is still needed.
func (p *fdPort) settle() {
	if p.in != nil && p.head == p.tail {
		p.pool.Put(p.in)
		p.in, p.head, p.tail = nil, 0, 0
	}
}

// guestEvents is the guest socket's registration until a write first comes
// back EAGAIN: as for clients (clientEvents), EPOLLOUT from the start would
// wake the loop each time the guest reads.
const guestEvents = unix.EPOLLIN | unix.EPOLLRDHUP

func (p *fdPort) source() guestSource { return p }
func (p *fdPort) linear() bool        { return true }

// Peek, Consume and Len make the buffer a guestSource. Consume only moves
// head: the bytes stay where they are until fill.
func (p *fdPort) Peek() (a, b []byte) { return p.in[p.head:p.tail], nil }
func (p *fdPort) Consume(n int)       { p.head += n }
func (p *fdPort) Len() int            { return p.tail - p.head }

func (p *fdPort) fill(want int) (int, error) {
	if p.eof {
		return 0, nil
	}
	fresh := p.in == nil
	if fresh {
		p.in = p.pool.Get(max(want, guestBuffer))
	}
	have := p.tail - p.head
	if have == 0 {
		p.head, p.tail = 0, 0
	}
	need := max(want-have, 1)
	if p.head > 0 && len(p.in)-p.tail < max(need, minGuestRead) {
		copy(p.in, p.in[p.head:p.tail])
		p.head, p.tail = 0, have
	}
	if len(p.in)-p.tail < need {
		// A frame larger than the buffer: grow it to hold the whole
		// frame, once; it is never shrunk, so this happens once per size.
		size := len(p.in)
		for size < have+need {
			size *= 2
		}
		nb := p.pool.Get(min(size, frame.MaxFrame))
		p.tail = copy(nb, p.in[p.head:p.tail])
		p.pool.Put(p.in)
		p.in, p.head = nb, 0
	}
	for {
		space := p.in[p.tail:]
		n, err := sysRead(p.fd, space)
		switch {
		case n > 0:
			p.tail += n
			// A short read emptied the socket: the next byte raises a
			// new edge.
			if n < len(space) && !p.hup {
				p.r.guestReadable = false
			}
			return n, nil
		case err == nil:
			p.eof = true
			return 0, nil
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			p.r.guestReadable = false
			// A buffer taken for this read that got nothing goes back
			// now, or a thousand sandboxes polled in one pass would hold
			// one each until their sweep; one in use stays for the next
			// frame.
			if fresh {
				p.settle()
			}
			return 0, nil
		default:
			p.eof = true
			return 0, err
		}
	}
}

func (p *fdPort) drained() bool { return p.eof }
func (p *fdPort) armRead() bool { return !p.r.guestReadable && !p.eof }

func (p *fdPort) writev(bufs [][]byte) (int, error) {
	if p.gone {
		return 0, nil
	}
	for {
		n, err := sysWritev(p.fd, bufs)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			p.r.guestWritable = false
			if !p.outArmed {
				if err := p.loop.Modify(p.tok, guestEvents|unix.EPOLLOUT); err != nil {
					p.gone = true
					return 0, err
				}
				p.outArmed = true
			}
			return 0, nil
		default:
			p.gone = true
			return 0, err
		}
	}
}

func (p *fdPort) armWrite() bool   { return !p.r.guestWritable && !p.gone }
func (p *fdPort) readerGone() bool { return p.gone }
func (p *fdPort) close() {
	if p.fd >= 0 {
		unix.Close(p.fd)
		p.fd = -1
	}
	if p.in != nil {
		p.pool.Put(p.in)
		p.in, p.head, p.tail = nil, 0, 0
	}
}

// guestHandler records the guest socket's readiness for the idle pass.
type guestHandler struct{ p *fdPort }

func (h guestHandler) OnEvent(ev uint32) {
	r := h.p.r
	r.kick()
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		r.guestReadable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		h.p.hup = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		r.guestWritable = true
	}
}
