package relay

import "github.com/agentrelay/agentrelay/frame"

// The exec audit trail: each exec start and end at info level, so an
// operator can tell from the relay's log who ran what and how it ended.
// "session" is the number exec.log files the session's output under; "id"
// the correlation id on the wire. Decoding the payloads allocates, once per
// exec and never per data frame.

// logExecStart logs a client's exec request with the peer's credentials.
func (r *Relay) logExecStart(c *conn, f frame.Frame, s session) {
	var req frame.ExecRequest
	m, err := frame.DecodeFrame(f)
	if err == nil {
		err = m.Into(&req)
	}
	if err != nil {
		r.log.Info("exec requested", "session", s.logID, "id", f.ID, "slot", c.slot,
			"uid", c.peerUID, "pid", c.peerPID, "decode_err", err)
		return
	}
	r.log.Info("exec requested", "session", s.logID, "id", f.ID, "slot", c.slot,
		"uid", c.peerUID, "pid", c.peerPID, "argv0", req.Cmd, "args", len(req.Args), "tty", req.TTY)
}

// logExecEnd logs the guest's terminal frame of an exec session: its exit
// code, or why it failed to start.
func (r *Relay) logExecEnd(f frame.Frame, s session) {
	m, err := frame.DecodeFrame(f)
	attrs := []any{"session", s.logID, "id", f.ID, "slot", s.slot, "client_departed", s.quarantined}
	switch {
	case err != nil:
		attrs = append(attrs, "decode_err", err)
	case m.Type == frame.TypeExecExited:
		var x frame.ExecExited
		if err := m.Into(&x); err != nil {
			attrs = append(attrs, "decode_err", err)
		} else {
			attrs = append(attrs, "exit_code", x.Code)
		}
		r.log.Info("exec exited", attrs...)
		return
	case m.Type == frame.TypeExecFailed:
		var x frame.ExecFailed
		if err := m.Into(&x); err != nil {
			attrs = append(attrs, "decode_err", err)
		} else {
			attrs = append(attrs, "kind", x.Kind, "message", x.Message)
		}
		r.log.Info("exec failed", attrs...)
		return
	default:
		attrs = append(attrs, "type", m.Type.String())
	}
	r.log.Info("exec ended", attrs...)
}
