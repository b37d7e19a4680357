package frame

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Payload types, one per message type (core.shutdown has none; the types
// added after 0.4.4 are in payload_later.go). Field order is wire order: the
// encoder writes fields in declaration order. Optional values are pointers,
// encoded as null when nil, never left out, as the original does, except
// where a tag says omitempty: upstream skips those when empty.

// Ready is the payload of core.ready: the guest's boot timeline and, from
// later agents, their version. An empty AgentVersion is left off the wire,
// as upstream does, so a 0.4.4 ready frame encodes byte for byte.
type Ready struct {
	BootTimeNs   uint64 `cbor:"boot_time_ns"`
	InitTimeNs   uint64 `cbor:"init_time_ns"`
	ReadyTimeNs  uint64 `cbor:"ready_time_ns"`
	AgentVersion string `cbor:"agent_version,omitempty"`
}

// ExecRequest is the payload of core.exec.request. Only Cmd is required on
// the wire; absent fields decode to their defaults (Rows 24, Cols 80, the
// rest zero).
type ExecRequest struct {
	Cmd     string   `cbor:"cmd"`
	Args    []string `cbor:"args"`
	Env     []string `cbor:"env"` // "KEY=VALUE"
	Cwd     *string  `cbor:"cwd"`
	User    *string  `cbor:"user"`
	TTY     bool     `cbor:"tty"`
	Rows    uint16   `cbor:"rows"`
	Cols    uint16   `cbor:"cols"`
	Rlimits []Rlimit `cbor:"rlimits"`
}

// Default terminal size of an ExecRequest that does not give one.
const (
	DefaultRows = 24
	DefaultCols = 80
)

// Rlimit is one resource limit of an ExecRequest, e.g. {"nofile", 1024, 65535}.
type Rlimit struct {
	Resource string `cbor:"resource"`
	Soft     uint64 `cbor:"soft"`
	Hard     uint64 `cbor:"hard"`
}

// execRequestWire is ExecRequest with Cmd as a pointer, so that a missing
// cmd can be told from an empty one.
type execRequestWire struct {
	Cmd     *string  `cbor:"cmd"`
	Args    []string `cbor:"args"`
	Env     []string `cbor:"env"`
	Cwd     *string  `cbor:"cwd"`
	User    *string  `cbor:"user"`
	TTY     bool     `cbor:"tty"`
	Rows    uint16   `cbor:"rows"`
	Cols    uint16   `cbor:"cols"`
	Rlimits []Rlimit `cbor:"rlimits"`
}

// UnmarshalCBOR applies the defaults for absent fields and requires cmd.
func (r *ExecRequest) UnmarshalCBOR(b []byte) error {
	w := execRequestWire{Rows: DefaultRows, Cols: DefaultCols}
	if err := decMode.Unmarshal(b, &w); err != nil {
		return err
	}
	if w.Cmd == nil {
		return errors.New("frame: exec request without cmd")
	}
	*r = ExecRequest{
		Cmd: *w.Cmd, Args: w.Args, Env: w.Env, Cwd: w.Cwd, User: w.User,
		TTY: w.TTY, Rows: w.Rows, Cols: w.Cols, Rlimits: w.Rlimits,
	}
	return nil
}

// ExecStarted is the payload of core.exec.started.
type ExecStarted struct {
	Pid uint32 `cbor:"pid"`
}

// ExecStdin is the payload of core.exec.stdin. Empty Data closes stdin.
type ExecStdin struct {
	Data []byte `cbor:"data"`
}

// ExecStdout is the payload of core.exec.stdout; in tty mode it carries
// stdout and stderr merged.
type ExecStdout struct {
	Data []byte `cbor:"data"`
}

// ExecStderr is the payload of core.exec.stderr (pipe mode only).
type ExecStderr struct {
	Data []byte `cbor:"data"`
}

// ExecExited is the payload of core.exec.exited.
type ExecExited struct {
	Code int32 `cbor:"code"`
}

// ExecFailed is the payload of core.exec.failed.
type ExecFailed struct {
	Kind      string  `cbor:"kind"` // one of the Fail* constants
	Errno     *int32  `cbor:"errno"`
	ErrnoName *string `cbor:"errno_name"`
	Message   string  `cbor:"message"`
	Stage     *string `cbor:"stage"`
}

// ExecFailed kinds.
const (
	FailNotFound         = "not_found"
	FailPermissionDenied = "permission_denied"
	FailNotExecutable    = "not_executable"
	FailBadCwd           = "bad_cwd"
	FailBadArgs          = "bad_args"
	FailResourceLimit    = "resource_limit"
	FailUserSetupFailed  = "user_setup_failed"
	FailOutOfMemory      = "out_of_memory"
	FailPtySetupFailed   = "pty_setup_failed"
	FailOther            = "other"
)

// ExecResize is the payload of core.exec.resize.
type ExecResize struct {
	Rows uint16 `cbor:"rows"`
	Cols uint16 `cbor:"cols"`
}

// ExecSignal is the payload of core.exec.signal.
type ExecSignal struct {
	Signal int32 `cbor:"signal"`
}

// FsRequest is the payload of core.fs.request.
type FsRequest struct {
	Op FsOp `cbor:"op"`
}

// UnmarshalCBOR requires op: a request without one means nothing.
func (r *FsRequest) UnmarshalCBOR(b []byte) error {
	var w struct {
		Op *FsOp `cbor:"op"`
	}
	if err := decMode.Unmarshal(b, &w); err != nil {
		return err
	}
	if w.Op == nil {
		return errors.New("frame: fs request without op")
	}
	r.Op = *w.Op
	return nil
}

// FsOpKind names a filesystem operation.
type FsOpKind uint8

// Filesystem operations.
const (
	FsStat FsOpKind = iota + 1
	FsList
	FsRead
	FsWrite
	FsMkdir
	FsRemove
	FsRemoveDir
	FsCopy
	FsRename
	numFsOps
)

var fsOpNames = [numFsOps]string{
	0: "", FsStat: "Stat", FsList: "List", FsRead: "Read", FsWrite: "Write",
	FsMkdir: "Mkdir", FsRemove: "Remove", FsRemoveDir: "RemoveDir",
	FsCopy: "Copy", FsRename: "Rename",
}

// String returns the operation's wire name, e.g. "RemoveDir".
func (k FsOpKind) String() string {
	if k >= numFsOps || k == 0 {
		return fmt.Sprintf("FsOpKind(%d)", uint8(k))
	}
	return fsOpNames[k]
}

func parseFsOpKind(s string) FsOpKind {
	for k := FsStat; k < numFsOps; k++ {
		if fsOpNames[k] == s {
			return k
		}
	}
	return 0
}

// FsOp is a filesystem operation. On the wire it is a Rust enum, externally
// tagged: a one-key map from the operation's name to its fields, e.g.
// {"Stat": {"path": "/etc/hostname"}}. Copy and Rename use Src and Dst,
// Write uses Path and Mode, the others Path alone.
type FsOp struct {
	Kind FsOpKind
	Path string
	Src  string
	Dst  string
	Mode *uint32 // Write only; nil leaves the mode to the guest
}

type fsPathOp struct {
	Path string `cbor:"path"`
}

type fsWriteOp struct {
	Path string  `cbor:"path"`
	Mode *uint32 `cbor:"mode"`
}

type fsMoveOp struct {
	Src string `cbor:"src"`
	Dst string `cbor:"dst"`
}

// fsOpWire holds the fields of every operation; presence is checked per kind.
type fsOpWire struct {
	Path *string `cbor:"path"`
	Src  *string `cbor:"src"`
	Dst  *string `cbor:"dst"`
	Mode *uint32 `cbor:"mode"`
}

// MarshalCBOR encodes o as its one-key map.
func (o FsOp) MarshalCBOR() ([]byte, error) {
	var fields any
	switch o.Kind {
	case FsStat, FsList, FsRead, FsMkdir, FsRemove, FsRemoveDir:
		fields = fsPathOp{o.Path}
	case FsWrite:
		fields = fsWriteOp{o.Path, o.Mode}
	case FsCopy, FsRename:
		fields = fsMoveOp{o.Src, o.Dst}
	default:
		return nil, fmt.Errorf("frame: fs op: unknown kind %d", o.Kind)
	}
	return marshalVariant(o.Kind.String(), fields)
}

// UnmarshalCBOR decodes a one-key map; the operation's fields are required,
// except Write's mode.
func (o *FsOp) UnmarshalCBOR(b []byte) error {
	name, raw, err := unmarshalVariant(b)
	if err != nil {
		return fmt.Errorf("frame: fs op: %w", err)
	}
	kind := parseFsOpKind(name)
	if kind == 0 {
		return fmt.Errorf("frame: fs op: unknown operation %q", name)
	}
	var w fsOpWire
	if err := decMode.Unmarshal(raw, &w); err != nil {
		return fmt.Errorf("frame: fs op %s: %w", name, err)
	}
	op := FsOp{Kind: kind}
	switch kind {
	case FsCopy, FsRename:
		if w.Src == nil || w.Dst == nil {
			return fmt.Errorf("frame: fs op %s: src and dst are required", name)
		}
		op.Src, op.Dst = *w.Src, *w.Dst
	default:
		if w.Path == nil {
			return fmt.Errorf("frame: fs op %s: path is required", name)
		}
		op.Path = *w.Path
		if kind == FsWrite {
			op.Mode = w.Mode
		}
	}
	*o = op
	return nil
}

// FsResponse is the payload of core.fs.response.
type FsResponse struct {
	OK    bool      `cbor:"ok"`
	Error *string   `cbor:"error"`
	Data  *FsResult `cbor:"data"` // nil for operations that return nothing
}

// FsResult is the data of a successful Stat or List. On the wire it is a
// one-key map: {"Stat": entry} when Stat is set, else {"List": [entry...]}.
type FsResult struct {
	Stat *FsEntry
	List []FsEntry
}

// MarshalCBOR encodes r as its one-key map.
func (r FsResult) MarshalCBOR() ([]byte, error) {
	if r.Stat != nil {
		return marshalVariant("Stat", r.Stat)
	}
	return marshalVariant("List", r.List)
}

// UnmarshalCBOR decodes {"Stat": entry} or {"List": [entry...]}. A decoded
// List is never nil, so that an empty list stays a List.
func (r *FsResult) UnmarshalCBOR(b []byte) error {
	name, raw, err := unmarshalVariant(b)
	if err != nil {
		return fmt.Errorf("frame: fs result: %w", err)
	}
	switch name {
	case "Stat":
		var e FsEntry
		if err := decMode.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("frame: fs result Stat: %w", err)
		}
		*r = FsResult{Stat: &e}
	case "List":
		l := []FsEntry{}
		if err := decMode.Unmarshal(raw, &l); err != nil {
			return fmt.Errorf("frame: fs result List: %w", err)
		}
		if l == nil {
			l = []FsEntry{}
		}
		*r = FsResult{List: l}
	default:
		return fmt.Errorf("frame: fs result: unknown variant %q", name)
	}
	return nil
}

// FsEntry describes one filesystem entry.
type FsEntry struct {
	Path     string `cbor:"path"`
	Kind     string `cbor:"kind"` // "file", "dir", "symlink", ...
	Size     uint64 `cbor:"size"`
	Mode     uint32 `cbor:"mode"`
	Modified *int64 `cbor:"modified"` // Unix seconds; nil if unknown
}

// FsData is the payload of core.fs.data: a file chunk of up to 3 MiB.
type FsData struct {
	Data []byte `cbor:"data"`
}

// marshalVariant encodes an externally tagged enum value: {name: fields}.
func marshalVariant(name string, fields any) ([]byte, error) {
	inner, err := encMode.Marshal(fields)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 1+9+len(name)+len(inner))
	b = appendHead(b, majorMap, 1)
	b = appendHead(b, majorText, uint64(len(name)))
	b = append(b, name...)
	return append(b, inner...), nil
}

func unmarshalVariant(b []byte) (string, []byte, error) {
	var v map[string]cbor.RawMessage
	if err := decMode.Unmarshal(b, &v); err != nil {
		return "", nil, err
	}
	if len(v) != 1 {
		return "", nil, fmt.Errorf("want a map with one key, got %d keys", len(v))
	}
	for name, raw := range v {
		return name, raw, nil
	}
	panic("unreachable")
}
