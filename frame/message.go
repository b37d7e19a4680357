package frame

import (
	"errors"
	"fmt"
)

// Message is a fully decoded frame. Its payload stays encoded until Into.
type Message struct {
	ID       uint32
	Flags    uint8
	Type     Type   // TypeUnknown if TypeName is not a known type
	TypeName string // the envelope's "t"
	Version  uint64 // the envelope's "v"
	Payload  []byte // the envelope's "p": the CBOR-encoded payload, or empty
}

// envelope is the frame body. Unknown keys are ignored, any key order is
// accepted, a repeated key is an error.
type envelope struct {
	V uint64 `cbor:"v"`
	T string `cbor:"t"`
	P []byte `cbor:"p"`
}

// ErrNoType is returned for an envelope whose "t" is missing or empty.
var ErrNoType = errors.New("frame: envelope has no message type")

// Decode decodes one whole frame: raw must hold exactly one frame. The
// Message does not alias raw.
func Decode(raw []byte) (Message, error) {
	f, err := Split(raw)
	if err != nil {
		return Message{}, err
	}
	if len(f.Raw) != len(raw) {
		return Message{}, fmt.Errorf("frame: %d bytes after the frame", len(raw)-len(f.Raw))
	}
	return DecodeFrame(f)
}

// DecodeFrame decodes the envelope of a frame found by Split or a Scanner.
func DecodeFrame(f Frame) (Message, error) {
	var env envelope
	if err := decMode.Unmarshal(f.Body, &env); err != nil {
		return Message{}, fmt.Errorf("frame: envelope: %w", err)
	}
	if env.T == "" {
		return Message{}, ErrNoType
	}
	return Message{
		ID:       f.ID,
		Flags:    f.Flags,
		Type:     ParseType([]byte(env.T)),
		TypeName: env.T,
		Version:  env.V,
		Payload:  env.P,
	}, nil
}

// Into decodes the payload into v, a pointer to the payload struct of
// m.Type (e.g. *ExecRequest). Unknown payload keys are ignored.
func (m Message) Into(v any) error {
	if err := decMode.Unmarshal(m.Payload, v); err != nil {
		return fmt.Errorf("frame: %s payload: %w", m.TypeName, err)
	}
	return nil
}
