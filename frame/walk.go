package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"unicode/utf8"
)

// A minimal CBOR walker for Peek. It accepts a strict subset of what the
// full decoder accepts: definite lengths only, no tags, no simple values but
// false, true, null, undefined and floats, text keys without repeats in the
// maps it looks into, and tighter nesting. Every read is bounds-checked
// against the slice, and every container count against the bytes left, so
// malformed input costs at most one pass over the body.

// ErrMalformed is matched (errors.Is) by every error Peek returns for a
// body it cannot read.
var ErrMalformed = errors.New("frame: malformed CBOR")

// walkError is a constant error: returning one does not allocate.
type walkError string

func (e walkError) Error() string        { return string(e) }
func (e walkError) Is(target error) bool { return target == ErrMalformed }

const (
	errTruncated  walkError = "frame: peek: CBOR item runs past the end"
	errReserved   walkError = "frame: peek: reserved CBOR additional information"
	errIndefinite walkError = "frame: peek: indefinite-length CBOR item"
	errTag        walkError = "frame: peek: CBOR tag"
	errSimple     walkError = "frame: peek: unsupported CBOR simple value"
	errDepth      walkError = "frame: peek: CBOR nested too deep"
	errCount      walkError = "frame: peek: CBOR container too large"
	errNotMap     walkError = "frame: peek: expected a CBOR map"
	errTooManyKey walkError = "frame: peek: too many map keys"
	errKey        walkError = "frame: peek: map key is not valid text"
	errDupKey     walkError = "frame: peek: repeated map key"
	errTrailing   walkError = "frame: peek: bytes after the CBOR item"
	errFieldType  walkError = "frame: peek: field has the wrong CBOR type"
	errNoType     walkError = "frame: peek: envelope has no message type"
	errNoData     walkError = "frame: peek: payload has no data"
)

const (
	// maxPeekDepth bounds nesting (the outer map is level 1), well inside
	// the full decoder's maxNestedLevels.
	maxPeekDepth = 16
	// maxPeekKeys bounds the keys of the maps Peek looks into: the repeat
	// check is quadratic. The protocol's widest map has 9 keys.
	maxPeekKeys = 32
)

// head reads the item head at b[off]: major type, additional information,
// argument, and the offset after the head.
func head(b []byte, off int) (major, ai byte, arg uint64, next int, err error) {
	if off >= len(b) {
		return 0, 0, 0, 0, errTruncated
	}
	major, ai = b[off]>>5, b[off]&0x1f
	off++
	var n int
	switch {
	case ai < 24:
		return major, ai, uint64(ai), off, nil
	case ai == 24:
		n = 1
	case ai == 25:
		n = 2
	case ai == 26:
		n = 4
	case ai == 27:
		n = 8
	case ai == 31:
		return 0, 0, 0, 0, errIndefinite
	default:
		return 0, 0, 0, 0, errReserved
	}
	if n > len(b)-off {
		return 0, 0, 0, 0, errTruncated
	}
	switch n {
	case 1:
		arg = uint64(b[off])
	case 2:
		arg = uint64(binary.BigEndian.Uint16(b[off:]))
	case 4:
		arg = uint64(binary.BigEndian.Uint32(b[off:]))
	default:
		arg = binary.BigEndian.Uint64(b[off:])
	}
	return major, ai, arg, off + n, nil
}

// skip returns the offset after the item at b[off], an item nested in a
// container at level depth.
func skip(b []byte, off, depth int) (int, error) {
	major, ai, arg, off, err := head(b, off)
	if err != nil {
		return 0, err
	}
	switch major {
	case majorUint, majorNeg:
		return off, nil
	case majorBytes, majorText:
		// Text in values nobody reads is not checked for UTF-8, by Peek
		// or by the full decoder.
		if arg > uint64(len(b)-off) {
			return 0, errTruncated
		}
		return off + int(arg), nil
	case majorArray, majorMap:
		if depth >= maxPeekDepth {
			return 0, errDepth
		}
		if arg > maxContainerSize {
			return 0, errCount
		}
		n := int(arg)
		if major == majorMap {
			n *= 2
		}
		if n > len(b)-off { // every item takes at least one byte
			return 0, errTruncated
		}
		for range n {
			if off, err = skip(b, off, depth+1); err != nil {
				return 0, err
			}
		}
		return off, nil
	case majorTag:
		return 0, errTag
	}
	// Major type 7: false, true, null, undefined, or a float.
	if (ai >= 20 && ai <= 23) || (ai >= 25 && ai <= 27) {
		return off, nil
	}
	return 0, errSimple
}

// str returns the definite string of the given major type at b[off].
func str(b []byte, off int, major byte) ([]byte, int, error) {
	if off < len(b) && b[off]>>5 == major && b[off]&0x1f < 24 {
		// Short strings (keys, most type names) have the length in the
		// initial byte.
		end := off + 1 + int(b[off]&0x1f)
		if end > len(b) {
			return nil, 0, errTruncated
		}
		return b[off+1 : end : end], end, nil
	}
	m, _, arg, off, err := head(b, off)
	if err != nil {
		return nil, 0, err
	}
	if m != major {
		return nil, 0, errFieldType
	}
	if arg > uint64(len(b)-off) {
		return nil, 0, errTruncated
	}
	end := off + int(arg)
	return b[off:end:end], end, nil
}

// mapWalker steps through the pairs of a map whose keys Peek matches. The
// map must span all of b. Keys must be distinct valid UTF-8 text, as the
// full decoder, which rejects a repeated key, requires.
type mapWalker struct {
	b    []byte
	off  int                    // next key, or the value after key
	left int                    // pairs not yet started
	n    int                    // keys seen
	keys [maxPeekKeys][2]uint32 // spans of the keys seen
}

func (w *mapWalker) init(b []byte) error {
	major, _, arg, off, err := head(b, 0)
	if err != nil {
		return err
	}
	if major != majorMap {
		return errNotMap
	}
	if arg > maxPeekKeys {
		return errTooManyKey
	}
	w.b, w.off, w.left, w.n = b, off, int(arg), 0
	return nil
}

// key reads the next key; ok is false after the last pair. The caller then
// consumes the value at w.off and stores the offset after it in w.off.
func (w *mapWalker) key() (key []byte, ok bool, err error) {
	if w.left == 0 {
		if w.off != len(w.b) {
			return nil, false, errTrailing
		}
		return nil, false, nil
	}
	w.left--
	key, w.off, err = str(w.b, w.off, majorText)
	if err != nil {
		if err == errFieldType {
			err = errKey
		}
		return nil, false, err
	}
	if !validText(key) {
		return nil, false, errKey
	}
	for _, k := range w.keys[:w.n] {
		if int(k[1]-k[0]) == len(key) && bytes.Equal(w.b[k[0]:k[1]], key) {
			return nil, false, errDupKey
		}
	}
	w.keys[w.n] = [2]uint32{uint32(w.off - len(key)), uint32(w.off)}
	w.n++
	return key, true, nil
}

// skipValue skips the value of the current key.
func (w *mapWalker) skipValue() (err error) {
	w.off, err = skip(w.b, w.off, 1)
	return err
}

// validText is utf8.Valid with a fast path for the short ASCII strings that
// keys and type names are.
func validText(s []byte) bool {
	for _, c := range s {
		if c >= utf8.RuneSelf {
			return utf8.Valid(s)
		}
	}
	return true
}
