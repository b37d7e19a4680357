package baseline

import (
	"context"
	"log/slog"

	"github.com/agentrelay/agentrelay/execlog"
	"github.com/agentrelay/agentrelay/frame"
)

// sessionInfo is what the exec.log tap knows of an exec session: the
// relay-wide session number written as "id" (protocol ids repeat after slot
// reuse; this never does) and whether it runs on a tty.
type sessionInfo struct {
	session uint64
	tty     bool
}

// registerExec is the client reader's half of the tap. As in the original it
// runs for every SESSION_START frame, with or without an exec.log writer:
// the frame is decoded in full to tell an exec request from an fs request,
// and an exec request gets the next session number. Without a writer
// nothing ever removes the entry again (the original's registry grows the
// same way).
func (r *Relay) registerExec(id uint32, raw []byte) {
	m, err := frame.Decode(raw)
	if err != nil || m.Type != frame.TypeExecRequest {
		return
	}
	var req frame.ExecRequest
	tty := m.Into(&req) == nil && req.TTY
	info := sessionInfo{session: r.nextSession.Add(1), tty: tty}
	r.regMu.Lock()
	r.registry[id] = info
	r.regMu.Unlock()
}

// tap is the guest reader's half, the original's tap_frame_into_log: decode
// every guest frame in full, append the output of known exec sessions to
// exec.log, and forget a session at its terminal frame. Failures are only
// logged: capture must never disturb routing.
func (r *Relay) tap(raw []byte, flags uint8) {
	m, err := frame.Decode(raw)
	if err != nil {
		if r.log.Enabled(context.Background(), slog.LevelDebug) {
			r.log.Debug("exec_log: skipping frame with decode error", "err", err)
		}
		return
	}
	r.regMu.Lock()
	info, known := r.registry[m.ID]
	r.regMu.Unlock()

	switch m.Type {
	case frame.TypeExecStdout:
		if !known {
			return
		}
		src := execlog.Stdout
		if info.tty {
			src = execlog.Output // a tty merges stdout and stderr
		}
		var p frame.ExecStdout
		if err := m.Into(&p); err != nil {
			r.log.Debug("exec_log: stdout payload decode failed", "err", err)
		} else {
			r.opt.ExecLog.Append(src, info.session, p.Data)
		}
	case frame.TypeExecStderr:
		if !known {
			return
		}
		var p frame.ExecStderr
		if err := m.Into(&p); err != nil {
			r.log.Debug("exec_log: stderr payload decode failed", "err", err)
		} else {
			r.opt.ExecLog.Append(execlog.Stderr, info.session, p.Data)
		}
	}
	if flags&frame.FlagTerminal != 0 {
		r.regMu.Lock()
		delete(r.registry, m.ID)
		r.regMu.Unlock()
	}
}
