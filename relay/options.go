package relay

import (
	"log/slog"
	"time"

	"agentrelay/execlog"
	"agentrelay/ring"
)

// Options configures a Relay. Zero values take the defaults documented on
// each field.
type Options struct {
	// Socket is the path of the clients' Unix socket. Its directory is
	// created 0700 if missing and must not be writable by group or others.
	Socket string
	// Console carries the guest's byte streams: the relay consumes Tx and
	// produces Rx.
	Console *ring.Console
	// ExecLog, if set, receives exec sessions' stdout/stderr. The relay
	// appends through a lock-free lane and never waits for the disk.
	ExecLog *execlog.Writer
	// Logger receives structured logs; the loop hands records to a
	// goroutine, so logging never blocks the loop. Default: slog.Default().
	Logger *slog.Logger

	// ReadyTimeout bounds the wait for core.ready. Default 60 s.
	ReadyTimeout time.Duration
	// ClientBuffer bounds each client's output buffer. Default 8 MiB; at
	// least frame.MaxFrame.
	ClientBuffer int
	// EvictGrace is how long a client whose output buffer is full may hold
	// up the guest stream before it is evicted. Default 1 s.
	EvictGrace time.Duration
	// QuarantineTimeout is how long a departed client's sessions stay
	// quarantined if the guest never ends them. Default 30 s.
	QuarantineTimeout time.Duration
	// AcceptWait is how long a connection beyond the 16th waits for a slot.
	// Default 5 s.
	AcceptWait time.Duration
	// AcceptQueue bounds how many such connections wait at once. Default 64.
	AcceptQueue int
	// MaxSessions bounds the open sessions of one client. Default 4096.
	MaxSessions int
	// AllowUIDs lists the peer uids allowed to connect. Default: the relay's
	// own effective uid and root.
	AllowUIDs []uint32
	// DrainTimeout bounds how long Stop waits to flush what is queued to
	// clients. Default 5 s.
	DrainTimeout time.Duration
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	if o.ClientBuffer <= 0 {
		o.ClientBuffer = 8 << 20
	}
	if o.EvictGrace <= 0 {
		o.EvictGrace = time.Second
	}
	if o.QuarantineTimeout <= 0 {
		o.QuarantineTimeout = 30 * time.Second
	}
	if o.AcceptWait <= 0 {
		o.AcceptWait = 5 * time.Second
	}
	if o.AcceptQueue <= 0 {
		o.AcceptQueue = 64
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 4096
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 5 * time.Second
	}
}
