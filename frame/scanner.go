package frame

import (
	"errors"
	"io"
)

// ErrFull is returned by Write and Fill when the Scanner has no free space:
// drain it with Next first.
var ErrFull = errors.New("frame: scanner buffer full")

// Scanner reassembles frames from a byte stream that arrives in arbitrary
// chunks. It owns one buffer, allocated by NewScanner and never grown; the
// stream is read straight into it (Space, Commit) or copied in (Write), and
// Next hands out frames as views into it.
//
// A Frame returned by Next stays valid until the next call to Space, Write,
// Fill, Commit or Reset: those may move buffered bytes to the front of the
// buffer. The usual loop reads once, then calls Next until ErrIncomplete.
//
// A Scanner is not safe for concurrent use.
type Scanner struct {
	buf []byte
	r   int // start of unconsumed bytes
	w   int // end of buffered bytes
}

// NewScanner returns a Scanner with a buffer of size bytes, 0 meaning
// MaxFrame. The largest frame it can return is size bytes long, prefix
// included: a scanner that must accept every valid frame needs size >=
// MaxFrame, and a smaller one reports larger frames as ErrTooLarge. A size
// above MaxFrame lets one read take in more frames.
func NewScanner(size int) *Scanner {
	if size <= 0 {
		size = MaxFrame
	}
	if size < HeaderSize {
		size = HeaderSize
	}
	return &Scanner{buf: make([]byte, size)}
}

// Next returns the next complete frame. It returns ErrIncomplete when more
// bytes are needed, and a *LengthError when the stream is corrupt or the
// frame cannot fit in the buffer; the error repeats until Reset, because the
// frame boundary is lost. Next never moves or allocates anything.
func (s *Scanner) Next() (Frame, error) {
	f, err := Split(s.buf[s.r:s.w])
	if err == nil {
		s.r += len(f.Raw)
		return f, nil
	}
	if err == ErrIncomplete && s.w-s.r >= LenSize {
		// The frame is valid but may never fit: say so now rather than
		// wait forever for bytes there is no room for.
		if n, _ := Len(s.buf[s.r:s.w]); n > len(s.buf) {
			return Frame{}, &LengthError{Len: uint32(n - LenSize), Limit: len(s.buf) - LenSize, Err: ErrTooLarge}
		}
	}
	return Frame{}, err
}

// Space returns the buffer's free space, to read into directly; report
// what was read with Commit. It may move buffered bytes, invalidating
// frames returned earlier. It is empty only when the buffer is full of
// frames the caller has not taken with Next yet.
func (s *Scanner) Space() []byte {
	s.compact(0)
	return s.buf[s.w:]
}

// Commit adds the first n bytes of the last Space to the buffered stream.
func (s *Scanner) Commit(n int) {
	if n < 0 || n > len(s.buf)-s.w {
		panic("frame: Scanner.Commit beyond Space")
	}
	s.w += n
}

// Write copies as much of p as fits into the buffer. When not all of it
// fits it returns ErrFull with the count copied: take frames with Next and
// write the rest.
func (s *Scanner) Write(p []byte) (int, error) {
	s.compact(len(p))
	n := copy(s.buf[s.w:], p)
	s.w += n
	if n < len(p) {
		return n, ErrFull
	}
	return n, nil
}

// Fill does one Read from r into the free space.
func (s *Scanner) Fill(r io.Reader) (int, error) {
	sp := s.Space()
	if len(sp) == 0 {
		return 0, ErrFull
	}
	n, err := r.Read(sp)
	s.Commit(n)
	return n, err
}

// Buffered returns the number of bytes taken in but not yet returned as
// frames.
func (s *Scanner) Buffered() int { return s.w - s.r }

// Reset drops every buffered byte, to start over after a corrupt stream.
func (s *Scanner) Reset() { s.r, s.w = 0, 0 }

// compact moves the unconsumed bytes to the front of the buffer when that
// is needed to make room for want more bytes or for the pending frame, or
// when the free tail has become smaller than the consumed head. Under the
// read-then-drain loop only one partial frame is ever moved, and each byte
// at most once.
func (s *Scanner) compact(want int) {
	if s.r == s.w {
		s.r, s.w = 0, 0
		return
	}
	if s.r == 0 {
		return
	}
	tail := len(s.buf) - s.w
	move := tail < s.r || tail < want
	if n, err := Len(s.buf[s.r:s.w]); err == nil && s.r+n > len(s.buf) {
		move = true
	}
	if move {
		s.w = copy(s.buf, s.buf[s.r:s.w])
		s.r = 0
	}
}
