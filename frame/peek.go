package frame

// Peeked is what a relay needs from a frame body: the message type, the
// envelope's generation, the data of a stdin, stdout or stderr payload, and
// whether an exec request asks for a tty.
type Peeked struct {
	Type    Type
	Version uint64 // the envelope's "v"; 0 if absent
	Data    []byte // sub-slice of the body, valid while the body is
	HasData bool   // Type is ExecStdin, ExecStdout or ExecStderr
	TTY     bool   // Type is ExecRequest and it asks for a tty
}

// Peek reads a frame body (the CBOR envelope, no header) without decoding
// it into Go values and without allocating. It checks the envelope fully,
// and the payload only for the types it looks into: stdin, stdout and
// stderr (which must carry "data") and exec requests (whose "tty", when
// present, must be a bool). An unknown "t" gives TypeUnknown, not an error,
// and so does every payload it does not look into: a relay forwards those
// frames as they are.
//
// Peek is stricter than Decode (definite lengths only, no tags, at most 32
// keys in the maps it looks into, 16 levels of nesting): when Peek
// succeeds, Decode succeeds on the same bytes with the same type, and so
// does Message.Into for stdin, stdout and stderr, with the same data. A
// body this package encodes always peeks. Every error matches ErrMalformed.
func Peek(body []byte) (Peeked, error) {
	var w mapWalker
	if err := w.init(body); err != nil {
		return Peeked{}, err
	}
	var t, p []byte
	var v uint64
	for {
		key, ok, err := w.key()
		if err != nil {
			return Peeked{}, err
		}
		if !ok {
			break
		}
		switch string(key) {
		case "v":
			var major byte
			major, _, v, w.off, err = head(body, w.off)
			if err == nil && major != majorUint {
				err = errFieldType
			}
		case "t":
			t, w.off, err = str(body, w.off, majorText)
			if err == nil && !validText(t) {
				err = errFieldType
			}
		case "p":
			p, w.off, err = str(body, w.off, majorBytes)
		default:
			err = w.skipValue()
		}
		if err != nil {
			return Peeked{}, err
		}
	}
	if len(t) == 0 {
		return Peeked{}, errNoType
	}
	pk := Peeked{Type: ParseType(t), Version: v}
	switch pk.Type {
	case TypeExecStdin, TypeExecStdout, TypeExecStderr:
		data, err := peekPayload(p, "data")
		if err != nil {
			return Peeked{}, err
		}
		if data == nil {
			return Peeked{}, errNoData
		}
		pk.Data, pk.HasData = data, true
	case TypeExecRequest:
		tty, err := peekPayload(p, "tty")
		if err != nil {
			return Peeked{}, err
		}
		pk.TTY = len(tty) == 1 && tty[0] == 0xf5
	}
	return pk, nil
}

// peekPayload walks the payload map and returns the value of field: the
// contents of a byte string for "data", the one-byte item (false or true)
// for "tty". It returns nil if the field is absent.
func peekPayload(p []byte, field string) ([]byte, error) {
	var w mapWalker
	if err := w.init(p); err != nil {
		return nil, err
	}
	var val []byte
	for {
		key, ok, err := w.key()
		if err != nil {
			return nil, err
		}
		if !ok {
			return val, nil
		}
		switch {
		case string(key) != field:
			err = w.skipValue()
		case field == "data":
			val, w.off, err = str(p, w.off, majorBytes)
		default: // "tty": false or true, nothing else
			if w.off < len(p) && (p[w.off] == 0xf4 || p[w.off] == 0xf5) {
				val = p[w.off : w.off+1 : w.off+1]
				w.off++
			} else if w.off >= len(p) {
				err = errTruncated
			} else {
				err = errFieldType
			}
		}
		if err != nil {
			return nil, err
		}
	}
}
