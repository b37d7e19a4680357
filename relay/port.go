package relay

import (
	"github.com/agentrelay/agentrelay/reactor"
)

// guestPort is how the relay reaches the guest: a byte stream in each
// direction, watched by the loop. Two implementations:
//
//   - fdPort: the guest's console socket (QEMU's chardev, hybrid vsock)
//     registered in the loop itself. Guest bytes are read into one buffer
//     and routed from it; client frames are written to it from the
//     clients' input buffers with one writev. No goroutine, no copy in
//     between.
//   - ringPort: a ring.Console, for a VMM that embeds the relay in its own
//     process and for the in-process echo and builtin guests.
//
// Every method runs on the loop thread.
type guestPort interface {
	// bind gives the port the relay whose guest flags its events and
	// reads set; New calls it before anything else touches the port.
	bind(r *Relay)
	// register adds the port's fds to the loop; deregister takes them out.
	register(l *reactor.Loop) error
	deregister(l *reactor.Loop)
	// settle gives back any buffer that holds nothing the relay still
	// needs; holds reports whether the port holds one.
	settle()
	holds() bool

	// source is where guest bytes are parsed from. A linear source keeps
	// what it has returned valid until the next fill, and can hold a whole
	// frame of up to frame.MaxFrame bytes, so frames are never staged.
	source() guestSource
	linear() bool
	// fill takes more guest bytes into the source, making room for a frame
	// of want bytes at its head. It returns how many bytes came: 0 with a
	// nil error means none are there now.
	fill(want int) (int, error)
	// drained reports whether the guest's stream has ended and every byte
	// of it has been taken from the source.
	drained() bool
	// armRead is called before the loop sleeps with nothing left to parse;
	// it reports false if bytes (or the end) are already there.
	armRead() bool

	// writev writes as much of bufs, in order, as the guest takes now.
	writev(bufs [][]byte) (int, error)
	// armWrite is called when a write fell short; it reports false if
	// there is room again already.
	armWrite() bool
	// readerGone reports whether the guest stopped reading for good.
	readerGone() bool

	close()
}

// guestSource is a queue of guest→host bytes: a ring.Ring, or an fdPort's
// buffer.
type guestSource interface {
	Peek() (a, b []byte)
	Consume(n int)
	Len() int
}
