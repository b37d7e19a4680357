package frame

// Payloads of the message types upstream added after 0.4.4, with its field
// names. Unknown fields are ignored on decode, so the optional fields later
// generations append (e.g. a bulk offer on core.tcp.connect) pass through a
// relay untouched and are simply not seen here.
//
// core.bootstrap has no payload type: it is the VMM's one-shot guest
// configuration (mounts, network, users), written into the console before
// the guest boots, never sent through a relay. Its payload stays opaque in
// Message.Payload.

// ExecStdinError is the payload of core.exec.stdin.error: the guest could
// not write a client's stdin to the process. It does not end the session.
type ExecStdinError struct {
	Errno     *int32  `cbor:"errno"`
	ErrnoName *string `cbor:"errno_name"`
	Message   string  `cbor:"message"`
}

// RelayClientDisconnected is the payload of core.relay.client.disconnected,
// which a 0.5-form relay sends the guest (id 0) after a client left, so that
// the guest can free what that client's id range held (open file handles).
type RelayClientDisconnected struct {
	IDStart        uint32 `cbor:"id_start"`
	IDEndExclusive uint32 `cbor:"id_end_exclusive"`
}

// InitResolved is the payload of core.init.resolved: a 0.6+ guest, before
// it mounts user volumes, reports its default user and waits for
// core.init.ack before it sends core.ready.
type InitResolved struct {
	DefaultUser ResolvedUser `cbor:"default_user"`
}

// ResolvedUser is the guest user and group commands run as by default.
type ResolvedUser struct {
	UID uint32 `cbor:"uid"`
	GID uint32 `cbor:"gid"`
}

// InitAck is the payload of core.init.ack, the host's answer to
// core.init.resolved. It is an empty map, not an empty payload: upstream's
// guest decodes it as a struct.
type InitAck struct{}

// ClockSync is the payload of core.clock.sync: the host asks the guest to
// step CLOCK_REALTIME to this time.
type ClockSync struct {
	UnixTimeNanos uint64 `cbor:"unix_time_nanos"`
}

// TCPConnect is the payload of core.tcp.connect, which starts a session: a
// TCP connection the guest opens on the client's behalf.
type TCPConnect struct {
	Host string `cbor:"host"`
	Port uint16 `cbor:"port"`
}

// TCPConnected is the payload of core.tcp.connected.
type TCPConnected struct{}

// TCPData is the payload of core.tcp.data, in either direction.
type TCPData struct {
	Data []byte `cbor:"data"`
}

// TCPEOF is the payload of core.tcp.eof: one side closed its write half.
type TCPEOF struct{}

// TCPClose is the payload of core.tcp.close.
type TCPClose struct{}

// TCPClosed is the payload of core.tcp.closed, which ends the session.
type TCPClosed struct{}

// TCPFailed is the payload of core.tcp.failed, which ends the session.
type TCPFailed struct {
	Error string `cbor:"error"`
}

// CoreError is the payload of core.error: a peer could not handle the
// frame with this correlation id. It ends that id's exchange.
type CoreError struct {
	Kind          string  `cbor:"kind"` // one of the Err* kinds
	Message       string  `cbor:"message"`
	OffendingType *string `cbor:"offending_type,omitempty"`
}

// CoreError kinds.
const (
	ErrKindMalformedMessage              = "malformed_message"
	ErrKindUnsupportedMessageType        = "unsupported_message_type"
	ErrKindUnsupportedProtocolGeneration = "unsupported_protocol_generation"
	ErrKindInvalidFlags                  = "invalid_flags"
	ErrKindInvalidPayload                = "invalid_payload"
	ErrKindInvalidSession                = "invalid_session"
)

// Ping is the payload of core.ping: is the guest agent there? It does not
// count as sandbox activity.
type Ping struct{}

// Pong is the payload of core.pong, the answer to core.ping.
type Pong struct{}

// Touch is the payload of core.touch: record sandbox activity.
type Touch struct{}

// Touched is the payload of core.touched, the answer to core.touch.
type Touched struct {
	ActivitySeq uint64 `cbor:"activity_seq"`
}
