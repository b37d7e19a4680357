package execlog

import (
	"encoding/binary"
	"sync/atomic"
	"time"
	"unsafe"
)

// A record in a lane's ring is a fixed header followed by the raw chunk,
// padded to 8 bytes so headers never straddle the end of the ring:
//
//	[0:4]   data length, or wrapMark: the rest of the ring is unused
//	[4]     source
//	[8:16]  sequence number (merge order across lanes)
//	[16:24] time, Unix nanoseconds
//	[24:32] session id
const (
	headerSize = 32
	wrapMark   = ^uint32(0)
	cacheLine  = 64
)

// Lane is a lock-free append path into a Writer: a single-producer,
// single-consumer ring of raw records that the writer goroutine formats.
// Exactly one goroutine may call Append on a Lane; it never blocks, never
// takes a lock and, once warm, never allocates or makes a system call except
// the channel send that wakes an idle writer.
type Lane struct {
	w    *Writer
	buf  []byte // allocated by the first put: a sandbox that runs nothing holds none
	size int
	// maxData is the largest chunk one record holds; with records of at most
	// half the ring, an empty ring accepts any record wherever it stands.
	maxData int

	_ [cacheLine]byte
	// Producer side.
	head       atomic.Uint64 // bytes ever published
	cachedTail uint64        // last tail seen, to read the shared one rarely
	active     atomic.Bool   // inside Append: Close waits for it to clear
	_          [cacheLine]byte
	// Consumer side (the writer goroutine).
	tail       atomic.Uint64 // bytes ever consumed
	ctail      uint64        // tail including skipped wrap marks, not yet published
	cachedHead uint64
	_          [cacheLine]byte
}

func newLane(w *Writer, size int) *Lane {
	size &^= 7
	return &Lane{w: w, size: size, maxData: size/2 - headerSize}
}

// Append queues one chunk. It is dropped, and counted in Stats, if the lane's
// buffer is full or the Writer is closed. A chunk larger than half the buffer
// is split, at a UTF-8 boundary where there is one, into several lines.
func (l *Lane) Append(s Source, session uint64, data []byte) {
	l.push(l.w.now().UnixNano(), s, session, data, false)
}

// AppendAt is Append with the time given by the caller, for one that already
// has the time at hand (the reactor's cached loop time): reading the clock
// can cost more than the rest of Append.
func (l *Lane) AppendAt(t time.Time, s Source, session uint64, data []byte) {
	l.push(t.UnixNano(), s, session, data, false)
}

// push is Append with an optional '\n' after data, for System.
func (l *Lane) push(nanos int64, s Source, session uint64, data []byte, newline bool) {
	w := l.w
	l.active.Store(true)
	if w.closed.Load() {
		l.active.Store(false)
		w.lose(len(data) + b2i(newline))
		return
	}
	published := false
	for {
		piece, nl := data, newline
		if len(piece)+b2i(nl) > l.maxData {
			nl = false
			if len(piece) > l.maxData {
				piece = data[:cut(data, l.maxData)]
			}
		}
		if !l.put(s, session, w.seq.Add(1), nanos, piece, nl) {
			w.lose(len(data) + b2i(newline))
			break
		}
		published = true
		data, newline = data[len(piece):], newline && !nl
		if len(data) == 0 && !newline {
			break
		}
	}
	l.active.Store(false)
	if published {
		w.notify()
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// cut returns where to end a piece of at most max bytes: before the lead
// byte of a sequence that would straddle the cut, so valid text is not
// split into replacement characters.
func cut(data []byte, max int) int {
	for i := max; i > max-4 && i > 0; i-- {
		if !continuation(data[i]) {
			return i
		}
	}
	return max
}

// put writes one record if it fits and publishes it.
func (l *Lane) put(s Source, session, seq uint64, nanos int64, data []byte, newline bool) bool {
	if l.buf == nil {
		// The consumer reads buf only after the head published below.
		l.buf = make([]byte, l.size)
	}
	n := len(data) + b2i(newline)
	size := uint64(headerSize + (n+7)&^7)
	capacity := uint64(len(l.buf))
	head := l.head.Load()
	pos := head % capacity
	need := size
	if capacity-pos < size {
		need += capacity - pos // skip to the start of the ring
	}
	if head+need-l.cachedTail > capacity {
		l.cachedTail = l.tail.Load()
		if head+need-l.cachedTail > capacity {
			return false
		}
	}
	if need != size {
		binary.LittleEndian.PutUint32(l.buf[pos:], wrapMark)
		head += capacity - pos
		pos = 0
	}
	rec := l.buf[pos : pos+size]
	binary.LittleEndian.PutUint32(rec[0:], uint32(n))
	rec[4] = byte(s)
	binary.LittleEndian.PutUint64(rec[8:], seq)
	binary.LittleEndian.PutUint64(rec[16:], uint64(nanos))
	binary.LittleEndian.PutUint64(rec[24:], session)
	copy(rec[headerSize:], data)
	if newline {
		rec[headerSize+len(data)] = '\n'
	}
	l.head.Store(head + size)
	return true
}

// record is a view of one queued record, valid until consume.
type record struct {
	source  Source
	seq     uint64
	nanos   int64
	session uint64
	data    []byte
	size    uint64
}

// peek returns the oldest record, if any. Consumer only.
func (l *Lane) peek() (r record, ok bool) {
	if l.ctail == l.cachedHead {
		l.cachedHead = l.head.Load()
		if l.ctail == l.cachedHead {
			return r, false
		}
	}
	capacity := uint64(len(l.buf))
	pos := l.ctail % capacity
	n := binary.LittleEndian.Uint32(l.buf[pos:])
	if n == wrapMark {
		l.ctail += capacity - pos
		pos = 0
		n = binary.LittleEndian.Uint32(l.buf[0:])
	}
	rec := l.buf[pos:]
	r.source = Source(rec[4])
	r.seq = binary.LittleEndian.Uint64(rec[8:])
	r.nanos = int64(binary.LittleEndian.Uint64(rec[16:]))
	r.session = binary.LittleEndian.Uint64(rec[24:])
	r.data = rec[headerSize : headerSize+int(n) : headerSize+int(n)]
	r.size = uint64(headerSize + (int(n)+7)&^7)
	return r, true
}

// consume frees the record peek returned. Consumer only.
func (l *Lane) consume(r record) {
	l.ctail += r.size
	l.tail.Store(l.ctail)
}

// pending reports whether records are queued; any goroutine.
func (l *Lane) pending() bool { return l.head.Load() != l.tail.Load() }

// stringBytes views s as bytes for copying into a ring; never written to.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
