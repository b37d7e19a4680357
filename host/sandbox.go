package host

import (
	"log/slog"
	"strings"
	"sync"
	"unicode"

	"github.com/agentrelay/agentrelay/execlog"
	"github.com/agentrelay/agentrelay/relay"
)

// sandbox is one entry of the registry.
type sandbox struct {
	name     string
	c        config
	loop     int          // -1: never placed
	r        *relay.Relay // nil: the guest could not be reached at restore
	startErr error        // why r is nil
	log      *slog.Logger
	xl       *execlog.Writer
	xlOnce   sync.Once
	removing bool // under Host.mu
}

// State names. They are relay.State's, plus none: a sandbox restored without
// a relay is guest_gone.
const (
	StateWaiting   = "waiting"
	StateServing   = "serving"
	StateGuestGone = "guest_gone"
	StateStopped   = "stopped"
)

// Info is a sandbox as the control API shows it.
type Info struct {
	Name         string `json:"name"`
	Guest        string `json:"guest"`
	Socket       string `json:"socket"`
	ExecLog      string `json:"exec_log"`
	Handshake    string `json:"handshake"`
	ReadyTimeout string `json:"ready_timeout"`
	// State is waiting (for the guest's core.ready), serving, guest_gone
	// (its stream ended, it never became ready, or it could not be
	// reached) or stopped.
	State string `json:"state"`
	// Error says why a sandbox is guest_gone or stopped; "" otherwise.
	Error string `json:"error"`
	// Loop is the index of the loop serving it; -1 if none ever did.
	Loop int `json:"loop"`
	// Clients is how many clients are connected now.
	Clients uint64 `json:"clients"`
	// Counters are relay.Stats (and exec.log's, prefixed exec_log_) in
	// snake case: frames_to_guest, clients_accepted, …
	Counters map[string]uint64 `json:"counters"`
}

func (sb *sandbox) info() Info {
	in := Info{Name: sb.name, Guest: sb.c.spec.Guest, Socket: sb.c.spec.Socket, ExecLog: sb.c.spec.ExecLog,
		Handshake: sb.c.spec.Handshake, ReadyTimeout: sb.c.spec.ReadyTimeout, Loop: sb.loop, State: StateGuestGone,
		Counters: map[string]uint64{}}
	if sb.r == nil {
		if sb.startErr != nil {
			in.Error = sb.startErr.Error()
		}
		return in
	}
	in.State = sb.r.State().String()
	if err := sb.r.Err(); err != nil {
		in.Error = err.Error()
	}
	st := sb.r.Stats()
	in.Clients = st.ClientsActive
	flatten(in.Counters, "", st)
	if sb.xl != nil {
		flatten(in.Counters, "exec_log_", sb.xl.Stats())
	}
	return in
}

// close ends the relay and waits until it has finished, then flushes
// exec.log.
func (sb *sandbox) close() {
	if sb.r != nil {
		sb.r.Close()
		<-sb.r.Done()
	}
	sb.closeLog(sb.log)
}

// closeLog flushes and closes exec.log once; the relay has finished.
func (sb *sandbox) closeLog(log *slog.Logger) {
	if sb.xl == nil {
		return
	}
	sb.xlOnce.Do(func() {
		if err := sb.xl.Close(); err != nil && log != nil {
			log.Error("exec.log", "err", err)
		}
	})
}

// flatten adds v's integer fields to m under their snake-case names.
func flatten(m map[string]uint64, prefix string, v any) {
	flattenNamed(m, prefix, v, snake)
}

// snake turns FramesToGuest into frames_to_guest and IDCollisions into
// id_collisions.
func snake(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i, c := range r {
		if unicode.IsUpper(c) {
			if i > 0 && (unicode.IsLower(r[i-1]) || i+1 < len(r) && unicode.IsLower(r[i+1])) {
				b.WriteByte('_')
			}
			c = unicode.ToLower(c)
		}
		b.WriteRune(c)
	}
	return b.String()
}
