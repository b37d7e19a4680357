package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
)

// IOTimeout bounds every blocking read and write of a Conn, so that a target
// that loses a frame fails its benchmark instead of hanging it.
const IOTimeout = 10 * time.Second

// Conn is a client connection on a raw, blocking Unix socket: no netpoller,
// no SDK, no buffering, so that a read or write is exactly one system call
// and costs the same whatever the target.
type Conn struct {
	fd     int
	Offset uint32 // the slot's boundary: the client's ids are Offset+1 .. Offset+Step-1
	Step   uint32 // the slot's id range in the handshake's form
	Ready  []byte // the core.ready frame of the handshake
}

// Dial connects to the socket at path and completes the handshake, either
// form: 0.4's [offset u32 BE] or 0.5's [id_start u32 BE][id_end_exclusive u32
// BE], told apart by the latter's shape, then one whole core.ready frame.
func Dial(path string) (*Conn, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", path, err)
	}
	c := &Conn{fd: fd}
	tv := unix.NsecToTimeval(IOTimeout.Nanoseconds())
	for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("dial %s: %w", path, err)
		}
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("dial %s: %w", path, err)
	}
	if err := c.handshake(); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("dial %s: handshake: %w", path, err)
	}
	return c, nil
}

func (c *Conn) handshake() error {
	var head [frame.LenSize + frame.LenSize]byte
	if err := c.ReadFull(head[:]); err != nil {
		return err
	}
	c.Offset, c.Step = binary.BigEndian.Uint32(head[:]), frame.Step
	if a, b := c.Offset, binary.BigEndian.Uint32(head[frame.LenSize:]); a%frame.Step05 == 1 && b == a-1+frame.Step05 {
		c.Offset, c.Step = a-1, frame.Step05
		if err := c.ReadFull(head[frame.LenSize:]); err != nil {
			return err
		}
	}
	n, err := frame.Len(head[frame.LenSize:])
	if err != nil {
		return err
	}
	c.Ready = make([]byte, n)
	copy(c.Ready, head[frame.LenSize:])
	if err := c.ReadFull(c.Ready[frame.LenSize:]); err != nil {
		return err
	}
	m, err := frame.Decode(c.Ready)
	if err != nil {
		return err
	}
	if m.Type != frame.TypeReady {
		return fmt.Errorf("first frame is %s, want core.ready", m.TypeName)
	}
	return nil
}

// ErrClosed is returned by reads that meet the end of the stream.
var ErrClosed = errors.New("bench: connection closed by the target")

// Read reads once into p: one system call (retried only on EINTR).
func (c *Conn) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(c.fd, p)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, fmt.Errorf("read: no data for %v", IOTimeout)
		case err != nil:
			return 0, fmt.Errorf("read: %w", err)
		case n == 0:
			return 0, ErrClosed
		}
		return n, nil
	}
}

// ReadFull reads exactly len(p) bytes.
func (c *Conn) ReadFull(p []byte) error {
	for len(p) > 0 {
		n, err := c.Read(p)
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// Write writes all of p, in as few system calls as the socket allows.
func (c *Conn) Write(p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(c.fd, p)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return fmt.Errorf("write: no room for %v", IOTimeout)
		case err != nil:
			return fmt.Errorf("write: %w", err)
		}
		p = p[n:]
	}
	return nil
}

// Close half-closes the connection and waits (up to IOTimeout) for the
// target to close its side, so that the target has released this client's
// slot before the next client dials. Bytes still arriving are discarded.
func (c *Conn) Close() error {
	if c.fd < 0 {
		return nil
	}
	fd := c.fd
	c.fd = -1
	defer unix.Close(fd)
	if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EINTR:
		case err != nil:
			return fmt.Errorf("close: waiting for the target to hang up: %w", err)
		case n == 0:
			return nil
		}
	}
}

// Abort closes the connection at once.
func (c *Conn) Abort() {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

// IDs hands out a client's correlation ids in order, wrapping inside its
// range [offset+1, offset+Step) as the protocol asks.
type IDs struct {
	first, next, end uint32
}

// NewIDs returns the ids of the client whose slot starts at offset, with
// ranges of step ids.
func NewIDs(offset, step uint32) IDs {
	return IDs{first: offset + 1, next: offset + 1, end: offset + step}
}

// Next returns the next id.
func (s *IDs) Next() uint32 {
	id := s.next
	s.next++
	if s.next == s.end {
		s.next = s.first
	}
	return id
}

// Skip advances past n ids, for a receiver that knows they were sent.
func (s *IDs) Skip(n uint32) {
	span := s.end - s.first
	s.next = s.first + (s.next-s.first+n%span)%span
}

// shutdown wakes any thread blocked on the socket, leaving the descriptor
// for Close or Abort.
func (c *Conn) shutdown() {
	if c.fd >= 0 {
		unix.Shutdown(c.fd, unix.SHUT_RDWR)
	}
}
