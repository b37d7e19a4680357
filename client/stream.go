package client

import (
	"context"
	"encoding/binary"
	"io"

	"github.com/agentrelay/agentrelay/frame"
)

// StreamBuffer is how many bytes of undelivered frames one Stream holds
// before the reader waits for its consumer. A Stream always accepts one
// frame when empty, so a frame larger than this still gets through.
const StreamBuffer = 1 << 20

// A Stream receives, in order, the frames the guest sends under one id.
// It ends with io.EOF after a TERMINAL frame. Recv is for one goroutine;
// Close may be called from any.
type Stream struct {
	id uint32
	c  *Conn

	// Guarded by c.mu: the reader and the consumer meet here. wake and
	// space carry no data, only "look again" (capacity 1, never blocks).
	q      [][]byte
	qBytes int
	inline [4][]byte // q's storage while it is short: most Streams never queue more
	end    error     // set when nothing more will be queued
	closed bool      // the consumer called Close
	wake   chan struct{}
	space  chan struct{}
}

// ID is the correlation id the Stream listens to.
func (s *Stream) ID() uint32 { return s.id }

// Subscribe routes frames arriving under id to the returned Stream until a
// TERMINAL frame, Close, or the connection's end. Subscribe before sending
// the request so that no reply can arrive unrouted. If id already has a
// live Stream, or the Conn is raw, the returned Stream's Recv fails.
func (c *Conn) Subscribe(id uint32) *Stream {
	s := &Stream{id: id, c: c, wake: make(chan struct{}, 1), space: make(chan struct{}, 1)}
	s.q = s.inline[:0]
	if !c.demux {
		s.end = errRaw
		return s
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.err != nil:
		s.end = c.err
	case c.subs[id] != nil:
		s.end = errorf("id %d already has a live stream", id)
	default:
		c.subs[id] = s
		c.live.Add(1)
	}
	return s
}

// Request allocates an id, subscribes to it and sends a message of type t.
// ctx bounds nothing but the start: the send itself blocks only under
// back-pressure, which Close ends.
func (c *Conn) Request(ctx context.Context, t frame.Type, payload any) (*Stream, error) {
	if !c.demux {
		return nil, errRaw
	}
	if err := ctx.Err(); err != nil {
		return nil, errorf("%s: %w", t, err)
	}
	s := c.Subscribe(c.NextID())
	if err := c.Send(s.id, t, payload); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Send sends a message of type t under the Stream's id.
func (s *Stream) Send(t frame.Type, payload any) error { return s.c.Send(s.id, t, payload) }

// Recv returns the next frame for the Stream's id, decoded. After the
// TERMINAL frame it returns io.EOF; if the connection ends first it returns
// the connection's error. The Message belongs to the caller.
func (s *Stream) Recv(ctx context.Context) (frame.Message, error) {
	raw, err := s.next(ctx)
	if err != nil {
		return frame.Message{}, err
	}
	m, err := frame.Decode(raw)
	if err != nil {
		return frame.Message{}, errorf("stream %d: %w", s.id, err)
	}
	return m, nil
}

// next returns the next whole frame, which nobody else references.
func (s *Stream) next(ctx context.Context) ([]byte, error) {
	for {
		s.c.mu.Lock()
		if s.closed {
			s.c.mu.Unlock()
			return nil, errorf("stream %d: closed", s.id)
		}
		if len(s.q) > 0 {
			raw := s.q[0]
			s.q[0] = nil
			s.q = s.q[1:]
			if len(s.q) == 0 {
				s.q = s.inline[:0] // start over at the front, not grow forever
			}
			s.qBytes -= len(raw)
			s.c.mu.Unlock()
			poke(s.space)
			return raw, nil
		}
		if s.end != nil {
			err := s.end
			s.c.mu.Unlock()
			return nil, err
		}
		s.c.mu.Unlock()
		select {
		case <-s.wake:
		case <-ctx.Done():
			return nil, errorf("stream %d: %w", s.id, ctx.Err())
		}
	}
}

// Close unsubscribes: later frames for the id are dropped and the id may be
// allocated again. Queued frames are discarded. Close is idempotent.
func (s *Stream) Close() error {
	c := s.c
	c.mu.Lock()
	if !s.closed {
		s.closed = true
		s.q, s.qBytes = nil, 0
		if c.subs[s.id] == s {
			delete(c.subs, s.id)
			c.live.Add(-1)
		}
	}
	c.mu.Unlock()
	poke(s.space) // a reader waiting for room must notice
	poke(s.wake)
	return nil
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// readLoop is the demultiplexer: the only reader of the socket.
func (c *Conn) readLoop() {
	var err error
	for {
		var raw []byte
		if raw, err = c.readFrame(nil); err != nil {
			break
		}
		id := binary.BigEndian.Uint32(raw[4:8])
		terminal := raw[8]&frame.FlagTerminal != 0
		c.mu.Lock()
		s := c.subs[id]
		if s != nil && terminal {
			// Free the id now; the Stream keeps what it was given.
			delete(c.subs, id)
			c.live.Add(-1)
		}
		c.mu.Unlock()
		if s == nil || !c.push(s, raw, terminal) {
			c.dropped.Add(1)
		}
	}
	c.stop(c.closedErr(err))
}

// push queues raw on s, waiting while s is over StreamBuffer: that wait is
// the back-pressure. It reports false if s was closed instead.
func (c *Conn) push(s *Stream, raw []byte, terminal bool) bool {
	c.mu.Lock()
	for !s.closed && s.qBytes > 0 && s.qBytes+len(raw) > StreamBuffer {
		c.mu.Unlock()
		select {
		case <-s.space:
		case <-c.closing:
			// stop will not see s if its TERMINAL frame already took it
			// out of subs, so end it here.
			c.mu.Lock()
			if s.end == nil {
				s.end = ErrClosed
			}
			c.mu.Unlock()
			poke(s.wake)
			return false
		}
		c.mu.Lock()
	}
	ok := !s.closed
	if ok {
		s.q = append(s.q, raw)
		s.qBytes += len(raw)
		if terminal {
			s.end = io.EOF
		}
	}
	c.mu.Unlock()
	poke(s.wake)
	return ok
}

// stop records why the reader ended and ends every live Stream with it.
func (c *Conn) stop(err error) {
	if err != ErrClosed {
		err = errorf("%w", err)
	}
	c.mu.Lock()
	c.err = err
	subs := c.subs
	c.subs = nil
	c.live.Store(0)
	for _, s := range subs {
		if s.end == nil {
			s.end = err
		}
	}
	c.mu.Unlock()
	for _, s := range subs {
		poke(s.wake)
	}
	close(c.done)
}
