package ring

import (
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/cpu"
)

// DefaultCapacity is the ring size NewConsole uses for capacity 0.
const DefaultCapacity = 1 << 20

// MaxCapacity bounds New so a typo cannot ask for an absurd allocation.
const MaxCapacity = 1 << 31

// ErrClosed is returned when writing to a ring whose consumer is gone
// (CloseRead) or whose producer already ended the stream (CloseWrite), and by
// Read after CloseRead.
var ErrClosed = errors.New("ring: closed")

// A Ring is a single-producer single-consumer byte ring with a fixed,
// power-of-two capacity. See the package documentation for the positions,
// the wake protocol and who may call what.
type Ring struct {
	// Read-only after New.
	buf   []byte
	mask  uint64
	data  *Wake // consumer sleeps here
	space *Wake // producer sleeps here

	// Stored once each, loaded by every Write and Read: a line of their own
	// keeps those loads from missing on the lines the positions dirty.
	_       cpu.CacheLinePad
	wclosed atomic.Bool // CloseWrite
	rclosed atomic.Bool // CloseRead

	// Producer's line: stored by the producer, loaded by the consumer when it
	// looks for data.
	_         cpu.CacheLinePad
	tail      atomic.Uint64
	phead     uint64 // producer's cached copy of head, refreshed when the ring looks full
	dataWakes atomic.Uint64

	// Consumer's line.
	_          cpu.CacheLinePad
	head       atomic.Uint64
	ctail      uint64 // consumer's last view of tail, so Consume need not load it
	spaceWakes atomic.Uint64

	// The sleep flags: each side loads the other's after every Write or
	// Consume, and under load nobody stores them, so those loads hit a
	// shared line and cost nothing.
	_            cpu.CacheLinePad
	dataWaiting  atomic.Uint32
	_            cpu.CacheLinePad
	spaceWaiting atomic.Uint32
	_            cpu.CacheLinePad
}

// Stats are a ring's counters since New.
type Stats struct {
	Written    uint64 // bytes published by the producer
	Consumed   uint64 // bytes released by the consumer
	DataWakes  uint64 // wake bytes written to the data pipe
	SpaceWakes uint64 // wake bytes written to the space pipe
}

// New allocates a ring of capacity bytes, which must be a power of two
// (0 means DefaultCapacity).
func New(capacity int) (*Ring, error) {
	if capacity == 0 {
		capacity = DefaultCapacity
	}
	if capacity < 0 || capacity&(capacity-1) != 0 || capacity > MaxCapacity {
		return nil, fmt.Errorf("ring: capacity %d is not a power of two between 1 and %d", capacity, MaxCapacity)
	}
	data, err := NewWake()
	if err != nil {
		return nil, err
	}
	space, err := NewWake()
	if err != nil {
		data.Close()
		return nil, err
	}
	return &Ring{
		buf:   make([]byte, capacity),
		mask:  uint64(capacity - 1),
		data:  data,
		space: space,
	}, nil
}

// Cap returns the capacity in bytes.
func (r *Ring) Cap() int { return len(r.buf) }

// Close frees the wake pipes. Both sides must be done with the ring.
func (r *Ring) Close() error {
	return errors.Join(r.data.Close(), r.space.Close())
}

// Stats returns the counters. Any goroutine.
func (r *Ring) Stats() Stats {
	return Stats{
		Written:    r.tail.Load(),
		Consumed:   r.head.Load(),
		DataWakes:  r.dataWakes.Load(),
		SpaceWakes: r.spaceWakes.Load(),
	}
}

// Producer side.

// Write copies as much of p as fits and returns how much that was; it never
// blocks and never drops. It wakes the consumer only if the consumer
// announced (ArmData) that it is about to sleep. After CloseWrite or
// CloseRead it writes nothing.
func (r *Ring) Write(p []byte) int {
	if len(p) == 0 || r.wclosed.Load() || r.rclosed.Load() {
		return 0
	}
	t := r.tail.Load()
	free := uint64(len(r.buf)) - (t - r.phead)
	if free < uint64(len(p)) {
		r.phead = r.head.Load()
		free = uint64(len(r.buf)) - (t - r.phead)
		if free == 0 {
			return 0
		}
	}
	n := min(uint64(len(p)), free)
	i := t & r.mask
	c := copy(r.buf[i:], p[:n])
	copy(r.buf, p[c:n])
	r.publish(t + n)
	return int(n)
}

// Writable returns the contiguous free span after the tail, for a producer
// that fills the ring directly (read(2) into it). Commit publishes what was
// filled. Empty when the ring is full or closed.
func (r *Ring) Writable() []byte {
	if r.wclosed.Load() || r.rclosed.Load() {
		return nil
	}
	t := r.tail.Load()
	r.phead = r.head.Load()
	free := uint64(len(r.buf)) - (t - r.phead)
	i := t & r.mask
	end := min(i+free, uint64(len(r.buf)))
	return r.buf[i:end:end]
}

// Commit publishes n bytes the producer wrote into the span Writable returned.
func (r *Ring) Commit(n int) {
	if n <= 0 {
		return
	}
	t := r.tail.Load()
	if uint64(n) > uint64(len(r.buf))-(t-r.phead) {
		panic("ring: Commit beyond the free space")
	}
	r.publish(t + uint64(n))
}

// publish stores the new tail and then, the second half of the handshake
// described in the package documentation, looks whether the consumer is
// asleep.
func (r *Ring) publish(t uint64) {
	r.tail.Store(t)
	r.wakeData()
}

func (r *Ring) wakeData() {
	if r.dataWaiting.Load() != 0 && r.dataWaiting.CompareAndSwap(1, 0) {
		r.dataWakes.Add(1)
		r.data.Wake()
	}
}

func (r *Ring) wakeSpace() {
	if r.spaceWaiting.Load() != 0 && r.spaceWaiting.CompareAndSwap(1, 0) {
		r.spaceWakes.Add(1)
		r.space.Wake()
	}
}

// Free returns how many bytes Write would accept now.
func (r *Ring) Free() int {
	r.phead = r.head.Load()
	return len(r.buf) - int(r.tail.Load()-r.phead)
}

// ArmSpace announces that the producer is about to sleep on SpaceFd until
// the consumer frees space. It returns false, and disarms, if there is space
// already or the consumer is gone: then the producer must not sleep but
// retry. After a wake-up the producer drains SpaceFd (DrainSpace) before it
// looks at the ring again.
func (r *Ring) ArmSpace() bool {
	r.spaceWaiting.Store(1)
	if r.Free() > 0 || r.rclosed.Load() || r.wclosed.Load() {
		r.spaceWaiting.Store(0)
		return false
	}
	return true
}

// SpaceFd is readable after the consumer freed space for an armed producer.
func (r *Ring) SpaceFd() int { return r.space.Fd() }

// DrainSpace empties the space pipe; the producer calls it after every
// wake-up on SpaceFd, before re-checking the ring.
func (r *Ring) DrainSpace() { r.space.Drain() }

// CloseWrite ends the stream: the consumer sees EOF once it has read
// everything written before. It may be called from any goroutine; it also
// wakes a producer blocked in WriteAll, which then fails with ErrClosed.
func (r *Ring) CloseWrite() {
	if r.wclosed.Swap(true) {
		return
	}
	r.wakeData()
	r.space.Wake()
}

// ReadClosed reports whether the consumer called CloseRead; Write then
// accepts nothing and WriteAll fails with ErrClosed.
func (r *Ring) ReadClosed() bool { return r.rclosed.Load() }

// Consumer side.

// Readable returns the contiguous readable span at the head, without
// copying. It is shorter than Len when the readable bytes wrap around the
// end of the buffer; Peek returns both parts. The span stays valid until
// Consume.
func (r *Ring) Readable() []byte {
	a, _ := r.Peek()
	return a
}

// Peek returns the readable bytes as two spans: a from the head up to the
// end of the buffer at most, and b, the part that wrapped to its start.
func (r *Ring) Peek() (a, b []byte) {
	h := r.head.Load()
	r.ctail = r.tail.Load()
	n := r.ctail - h
	i := h & r.mask
	if end := i + n; end <= uint64(len(r.buf)) {
		return r.buf[i:end:end], nil
	}
	rest := i + n - uint64(len(r.buf))
	return r.buf[i:], r.buf[:rest:rest]
}

// CopyOut copies up to len(dst) readable bytes into dst without consuming
// them and returns how many it copied. It is how a frame that wraps the end
// of the buffer is made linear.
func (r *Ring) CopyOut(dst []byte) int {
	a, b := r.Peek()
	n := copy(dst, a)
	return n + copy(dst[n:], b)
}

// Consume releases the first n readable bytes. It wakes the producer only if
// the producer announced (ArmSpace) that it is about to sleep.
func (r *Ring) Consume(n int) {
	if n <= 0 {
		return
	}
	h := r.head.Load()
	if uint64(n) > r.ctail-h {
		// Consuming more than the consumer has seen: look again
		// before calling it a bug.
		if r.ctail = r.tail.Load(); uint64(n) > r.ctail-h {
			panic("ring: Consume beyond the readable bytes")
		}
	}
	r.head.Store(h + uint64(n))
	r.wakeSpace()
}

// Len returns the number of readable bytes.
func (r *Ring) Len() int {
	return int(r.tail.Load() - r.head.Load())
}

// ArmData announces that the consumer is about to sleep on DataFd until the
// producer writes. It returns false, and disarms, if data or EOF is there
// already: then the consumer must not sleep but read. After a wake-up the
// consumer drains DataFd (DrainData) before it looks at the ring again.
func (r *Ring) ArmData() bool {
	r.dataWaiting.Store(1)
	if r.tail.Load() != r.head.Load() || r.wclosed.Load() || r.rclosed.Load() {
		r.dataWaiting.Store(0)
		return false
	}
	return true
}

// DataFd is readable after the producer wrote to an armed consumer.
func (r *Ring) DataFd() int { return r.data.Fd() }

// DrainData empties the data pipe; the consumer calls it after every
// wake-up on DataFd, before re-checking the ring.
func (r *Ring) DrainData() { r.data.Drain() }

// Closed reports whether the producer called CloseWrite. Bytes written
// before may still be readable: the stream is over when Closed is true and
// Len, looked at afterwards, is 0.
func (r *Ring) Closed() bool { return r.wclosed.Load() }

// CloseRead says the consumer is gone: from now on Write accepts nothing,
// WriteAll and Read fail with ErrClosed, and a producer asleep on SpaceFd is
// woken. It may be called from any goroutine, which also wakes a consumer
// blocked in Read.
func (r *Ring) CloseRead() {
	if r.rclosed.Swap(true) {
		return
	}
	r.wakeSpace()
	r.data.Wake()
}
