package frame

// Type is a message type: the envelope's "t" string as a small integer.
type Type uint8

// Message types. The first block is protocol 0.4.4's; the second holds the
// types upstream added up to generation 7 (microsandbox 0.6.10 and later).
// TypeUnknown stands for any "t" this package does not know; such frames
// are still valid and can be forwarded.
const (
	TypeUnknown Type = iota
	TypeReady
	TypeShutdown
	TypeExecRequest
	TypeExecStarted
	TypeExecStdin
	TypeExecStdout
	TypeExecStderr
	TypeExecExited
	TypeExecFailed
	TypeExecResize
	TypeExecSignal
	TypeFsRequest
	TypeFsResponse
	TypeFsData

	TypeExecStdinError
	TypeRelayClientDisconnected
	TypeInitResolved
	TypeInitAck
	TypeClockSync
	TypeTCPConnect
	TypeTCPConnected
	TypeTCPData
	TypeTCPEOF
	TypeTCPClose
	TypeTCPClosed
	TypeTCPFailed
	TypeCoreError
	TypePing
	TypePong
	TypeTouch
	TypeTouched
	TypeBootstrap
	numTypes
)

var typeNames = [numTypes]string{
	TypeUnknown:     "unknown",
	TypeReady:       "core.ready",
	TypeShutdown:    "core.shutdown",
	TypeExecRequest: "core.exec.request",
	TypeExecStarted: "core.exec.started",
	TypeExecStdin:   "core.exec.stdin",
	TypeExecStdout:  "core.exec.stdout",
	TypeExecStderr:  "core.exec.stderr",
	TypeExecExited:  "core.exec.exited",
	TypeExecFailed:  "core.exec.failed",
	TypeExecResize:  "core.exec.resize",
	TypeExecSignal:  "core.exec.signal",
	TypeFsRequest:   "core.fs.request",
	TypeFsResponse:  "core.fs.response",
	TypeFsData:      "core.fs.data",

	TypeExecStdinError:          "core.exec.stdin.error",
	TypeRelayClientDisconnected: "core.relay.client.disconnected",
	TypeInitResolved:            "core.init.resolved",
	TypeInitAck:                 "core.init.ack",
	TypeClockSync:               "core.clock.sync",
	TypeTCPConnect:              "core.tcp.connect",
	TypeTCPConnected:            "core.tcp.connected",
	TypeTCPData:                 "core.tcp.data",
	TypeTCPEOF:                  "core.tcp.eof",
	TypeTCPClose:                "core.tcp.close",
	TypeTCPClosed:               "core.tcp.closed",
	TypeTCPFailed:               "core.tcp.failed",
	TypeCoreError:               "core.error",
	TypePing:                    "core.ping",
	TypePong:                    "core.pong",
	TypeTouch:                   "core.touch",
	TypeTouched:                 "core.touched",
	TypeBootstrap:               "core.bootstrap",
}

// String returns the wire string, e.g. "core.exec.stdout". TypeUnknown and
// out-of-range values return "unknown", which is not a wire string.
func (t Type) String() string {
	if t >= numTypes {
		return typeNames[TypeUnknown]
	}
	return typeNames[t]
}

// Known reports whether t is one of the protocol's message types.
func (t Type) Known() bool { return t > TypeUnknown && t < numTypes }

// Flags returns the header flags a frame of this type carries. They are
// upstream's: a TCP stream is a session like an exec, and the replies to
// ping and touch, and core.error, end their correlation id's exchange.
func (t Type) Flags() uint8 {
	switch t {
	case TypeShutdown:
		return FlagShutdown
	case TypeExecRequest, TypeFsRequest, TypeTCPConnect:
		return FlagSessionStart
	case TypeExecExited, TypeExecFailed, TypeFsResponse, TypeTCPClosed, TypeTCPFailed,
		TypeCoreError, TypePong, TypeTouched:
		return FlagTerminal
	}
	return 0
}

// Since returns the protocol generation that introduced t (upstream's
// min_protocol_version), 0 for TypeUnknown. A peer that negotiated an
// older generation does not know the type.
func (t Type) Since() uint64 {
	switch t {
	case TypeUnknown:
		return 0
	case TypeFsRequest, TypeFsResponse, TypeFsData:
		return 2
	case TypeTCPConnect, TypeTCPConnected, TypeTCPData, TypeTCPEOF, TypeTCPClose,
		TypeTCPClosed, TypeTCPFailed:
		return 4
	case TypeCoreError:
		return 5
	case TypePing, TypePong, TypeTouch, TypeTouched:
		return 6
	case TypeBootstrap:
		return 7
	}
	if t >= numTypes {
		return 0
	}
	return 1
}

// ParseType maps a wire string to its Type, TypeUnknown if it is not one.
// It does not allocate: the switch on string(s) compares in place.
func ParseType(s []byte) Type {
	switch string(s) {
	case "core.ready":
		return TypeReady
	case "core.shutdown":
		return TypeShutdown
	case "core.exec.request":
		return TypeExecRequest
	case "core.exec.started":
		return TypeExecStarted
	case "core.exec.stdin":
		return TypeExecStdin
	case "core.exec.stdout":
		return TypeExecStdout
	case "core.exec.stderr":
		return TypeExecStderr
	case "core.exec.exited":
		return TypeExecExited
	case "core.exec.failed":
		return TypeExecFailed
	case "core.exec.resize":
		return TypeExecResize
	case "core.exec.signal":
		return TypeExecSignal
	case "core.fs.request":
		return TypeFsRequest
	case "core.fs.response":
		return TypeFsResponse
	case "core.fs.data":
		return TypeFsData
	case "core.exec.stdin.error":
		return TypeExecStdinError
	case "core.relay.client.disconnected":
		return TypeRelayClientDisconnected
	case "core.init.resolved":
		return TypeInitResolved
	case "core.init.ack":
		return TypeInitAck
	case "core.clock.sync":
		return TypeClockSync
	case "core.tcp.connect":
		return TypeTCPConnect
	case "core.tcp.connected":
		return TypeTCPConnected
	case "core.tcp.data":
		return TypeTCPData
	case "core.tcp.eof":
		return TypeTCPEOF
	case "core.tcp.close":
		return TypeTCPClose
	case "core.tcp.closed":
		return TypeTCPClosed
	case "core.tcp.failed":
		return TypeTCPFailed
	case "core.error":
		return TypeCoreError
	case "core.ping":
		return TypePing
	case "core.pong":
		return TypePong
	case "core.touch":
		return TypeTouch
	case "core.touched":
		return TypeTouched
	case "core.bootstrap":
		return TypeBootstrap
	}
	return TypeUnknown
}
