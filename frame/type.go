package frame

// Type is a message type: the envelope's "t" string as a small integer.
type Type uint8

// Message types of protocol 0.4.4. TypeUnknown stands for any "t" this
// package does not know; such frames are still valid and can be forwarded.
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

// Flags returns the header flags a frame of this type carries.
func (t Type) Flags() uint8 {
	switch t {
	case TypeShutdown:
		return FlagShutdown
	case TypeExecRequest, TypeFsRequest:
		return FlagSessionStart
	case TypeExecExited, TypeExecFailed, TypeFsResponse:
		return FlagTerminal
	}
	return 0
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
	}
	return TypeUnknown
}
