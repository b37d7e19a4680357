// Package frame implements the relay's wire format: length-prefixed frames
// ([len u32 BE][id u32 BE][flags u8][CBOR body]), the CBOR envelope
// {"v", "t", "p"} and every payload type of microsandbox 0.4.4's agent
// protocol, byte-compatible with the original encoder, plus the message
// types and both handshake forms of the later generations (up to 7,
// microsandbox 0.6.10 and later). A relay forwards types it does not know.
//
// The package has two speeds. The hot path (Split, Scanner, Peek,
// AppendFrame) reads frames and the few envelope fields a relay routes on
// straight out of the caller's buffer, without allocating or copying: a
// relay forwards bytes, it does not need to build messages. The cold path
// (Decode, Message.Into, AppendMessage) uses github.com/fxamacker/cbor/v2
// to turn whole messages into Go values and back.
//
// Peek is a hand-written CBOR walker that is deliberately stricter than the
// full decoder: whenever Peek succeeds, Decode succeeds and agrees with it
// on the type, the data bytes and the tty flag (FuzzPeek checks this).
package frame
