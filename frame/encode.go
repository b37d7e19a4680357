package frame

import (
	"encoding/binary"
	"fmt"
)

// CBOR major types.
const (
	majorUint  = 0
	majorNeg   = 1
	majorBytes = 2
	majorText  = 3
	majorArray = 4
	majorMap   = 5
	majorTag   = 6
	majorOther = 7
)

// appendHead appends a CBOR item head with its argument in the shortest
// form, as the original encoder does.
func appendHead(dst []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(dst, m|byte(n))
	case n <= 0xff:
		return append(dst, m|24, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, m|25), uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(dst, m|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, m|27), n)
}

// dataKey is the payload {"data": ...} up to the byte string's head.
var dataKey = [...]byte{majorMap<<5 | 1, majorText<<5 | 4, 'd', 'a', 't', 'a'}

// AppendMessage appends a whole frame: header, envelope (generation
// Version) and payload, with the flags t implies. payload is one of the
// payload structs (or a pointer to one), or nil for an empty payload. The
// data-carrying payloads (ExecStdin, ExecStdout, ExecStderr, FsData,
// TCPData) are encoded without allocating. On error dst is returned
// unchanged.
func AppendMessage(dst []byte, id uint32, t Type, payload any) ([]byte, error) {
	return AppendMessageVersion(dst, id, Version, t, payload)
}

// AppendMessageVersion is AppendMessage with the envelope's "v" given: a
// relay answers a guest in the generation the guest announced.
func AppendMessageVersion(dst []byte, id uint32, v uint64, t Type, payload any) ([]byte, error) {
	if !t.Known() {
		return dst, fmt.Errorf("frame: cannot encode message type %d", t)
	}
	var data []byte
	switch p := payload.(type) {
	case nil:
		return appendEnvelope(dst, id, t.Flags(), v, t.String(), nil, nil)
	case ExecStdout:
		data = p.Data
	case *ExecStdout:
		data = p.Data
	case ExecStderr:
		data = p.Data
	case *ExecStderr:
		data = p.Data
	case ExecStdin:
		data = p.Data
	case *ExecStdin:
		data = p.Data
	case FsData:
		data = p.Data
	case *FsData:
		data = p.Data
	case TCPData:
		data = p.Data
	case *TCPData:
		data = p.Data
	default:
		enc, err := encMode.Marshal(payload)
		if err != nil {
			return dst, fmt.Errorf("frame: encode %s payload: %w", t, err)
		}
		return appendEnvelope(dst, id, t.Flags(), v, t.String(), enc, nil)
	}
	var head [len(dataKey) + 9]byte
	return appendEnvelope(dst, id, t.Flags(), v, t.String(),
		appendHead(append(head[:0], dataKey[:]...), majorBytes, uint64(len(data))), data)
}

// Append appends m as a whole frame: its header fields, an envelope with
// m.Version and m.TypeName (m.Type's wire string if TypeName is empty) and
// m.Payload as is. With Decode it round-trips any frame whose envelope has
// no unknown keys.
func (m Message) Append(dst []byte) ([]byte, error) {
	name := m.TypeName
	if name == "" {
		if !m.Type.Known() {
			return dst, fmt.Errorf("frame: message has no type")
		}
		name = m.Type.String()
	}
	return appendEnvelope(dst, m.ID, m.Flags, m.Version, name, m.Payload, nil)
}

// appendEnvelope appends a frame whose body is {"v": v, "t": t, "p": p1+p2}.
// The payload comes in two parts so that a payload head and its data can be
// written without first joining them.
func appendEnvelope(dst []byte, id uint32, flags uint8, v uint64, t string, p1, p2 []byte) ([]byte, error) {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, 0) // patched below
	dst = binary.BigEndian.AppendUint32(dst, id)
	dst = append(dst, flags, majorMap<<5|3, majorText<<5|1, 'v')
	dst = appendHead(dst, majorUint, v)
	dst = append(dst, majorText<<5|1, 't')
	dst = appendHead(dst, majorText, uint64(len(t)))
	dst = append(dst, t...)
	dst = append(dst, majorText<<5|1, 'p')
	dst = appendHead(dst, majorBytes, uint64(len(p1)+len(p2)))
	dst = append(dst, p1...)
	dst = append(dst, p2...)
	n := len(dst) - start - LenSize
	if n > MaxLen {
		return dst[:start], &LengthError{Len: uint32(min(n, 1<<32-1)), Limit: MaxLen, Err: ErrTooLarge}
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(n))
	return dst, nil
}
