package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Frame is one complete frame found in someone else's buffer. Body and Raw
// alias that buffer (capacity clipped, so appending to them cannot clobber
// the bytes after the frame); copy them to keep them past the buffer's
// next reuse.
type Frame struct {
	ID    uint32
	Flags uint8
	Body  []byte // CBOR envelope
	Raw   []byte // whole frame, length prefix included
}

var (
	// ErrIncomplete means the buffer holds the start of a frame but not all
	// of it: read more bytes and try again.
	ErrIncomplete = errors.New("frame: incomplete")
	// ErrTooShort is wrapped by a *LengthError for a len field below MinLen.
	ErrTooShort = errors.New("frame: too short")
	// ErrTooLarge is wrapped by a *LengthError for a len field above MaxLen,
	// or above what a Scanner's buffer can hold.
	ErrTooLarge = errors.New("frame: too large")
)

// LengthError reports an invalid len field. The stream cannot be trusted
// after it: the frame boundary is lost.
type LengthError struct {
	Len   uint32 // the offending len field
	Limit int    // the bound it broke: MinLen, MaxLen or a Scanner's
	Err   error  // ErrTooShort or ErrTooLarge
}

func (e *LengthError) Error() string {
	if e.Err == ErrTooShort {
		return fmt.Sprintf("frame: len %d is too short (minimum %d)", e.Len, e.Limit)
	}
	return fmt.Sprintf("frame: len %d is too large (maximum %d)", e.Len, e.Limit)
}

func (e *LengthError) Unwrap() error { return e.Err }

// Len returns the total size of the frame that buf starts with, length
// prefix included, after validating the len field. buf needs only the
// LenSize prefix; with fewer bytes Len returns ErrIncomplete.
func Len(buf []byte) (n int, err error) {
	if len(buf) < LenSize {
		return 0, ErrIncomplete
	}
	l := binary.BigEndian.Uint32(buf)
	switch {
	case l < MinLen:
		return 0, &LengthError{Len: l, Limit: MinLen, Err: ErrTooShort}
	case l > MaxLen:
		return 0, &LengthError{Len: l, Limit: MaxLen, Err: ErrTooLarge}
	}
	return LenSize + int(l), nil
}

// Split returns the first frame in buf as a view into buf. It returns
// ErrIncomplete when buf ends before the frame does, and a *LengthError as
// soon as the prefix is invalid, without waiting for the rest. It never
// reads past buf and never allocates on success.
func Split(buf []byte) (f Frame, err error) {
	n, err := Len(buf)
	if err != nil {
		return Frame{}, err
	}
	if len(buf) < n {
		return Frame{}, ErrIncomplete
	}
	raw := buf[:n:n]
	return Frame{
		ID:    binary.BigEndian.Uint32(raw[LenSize:]),
		Flags: raw[LenSize+4],
		Body:  raw[HeaderSize:],
		Raw:   raw,
	}, nil
}

// AppendFrame appends a frame carrying body to dst. The caller keeps body
// within MaxLen-MinLen bytes; Split rejects anything larger.
func AppendFrame(dst []byte, id uint32, flags uint8, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(MinLen+len(body)))
	dst = binary.BigEndian.AppendUint32(dst, id)
	dst = append(dst, flags)
	return append(dst, body...)
}
