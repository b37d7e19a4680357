package execlog

import "strconv"

// Source is the stream a chunk came from; it becomes the line's "s" field.
type Source uint8

const (
	Stdout Source = iota // core.exec.stdout of a pipe session
	Stderr               // core.exec.stderr
	Output               // a tty session's merged stream
	System               // the relay's own notes; lines carry no "id"
)

var sourceNames = [...]string{Stdout: "stdout", Stderr: "stderr", Output: "output", System: "system"}

// String returns the wire name written in the "s" field.
func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	// A caller bug, kept visible in the log rather than silently relabelled.
	return "source(" + strconv.Itoa(int(s)) + ")"
}
