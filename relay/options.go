package relay

import (
	"log/slog"
	"time"

	"github.com/agentrelay/agentrelay/execlog"
	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/ring"
)

// Options configures a Relay. Zero values take the defaults documented on
// each field.
type Options struct {
	// Socket is the path of the clients' Unix socket. Its directory is
	// created 0700 if missing and must be owned by the relay's euid or root
	// and not writable by group or others; a socket a live relay serves is
	// never taken over (unixsock.Listen).
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

// Sizes behind MemoryBound, measured on amd64; cmd/relay's TestMemoryBound
// checks the whole against the binary's peak RSS under a flood.
const (
	sessionEntryBytes = 80      // one session table entry, the map's overhead included
	qentryBytes       = 100     // one quarantine FIFO entry (40 B), with append's slack and the copy as it grows
	waiterBytes       = 64      // one waiting connection's entry (40 B), with slack
	logQueueLen       = 4096    // log records the loop may have queued for the log goroutine
	logRecordBytes    = 1 << 10 // one queued record with its cloned attributes, generously
)

// MemoryBound returns the most memory a Relay built with o can hold, with
// every buffer at its bound and every table full, by the formula in the
// package documentation. It counts the console's rings when o.Console is
// set, and not the exec.log writer, whose owner adds
// execlog.Writer.MemoryBound. With the defaults it is 227.8 MiB, plus 2 MiB
// for a console of ring.DefaultCapacity.
func (o Options) MemoryBound() int64 {
	o.setDefaults()
	clients := int64(frame.MaxClients)
	sessions := clients * int64(o.MaxSessions)
	kill, _ := frame.AppendMessage(nil, 0, frame.TypeExecSignal, frame.ExecSignal{Signal: 9})
	b := clients*int64(o.ClientBuffer+frame.MaxFrame) + // client output and input buffers
		3*frame.MaxFrame + // guest staging buffer, spill, cached core.ready
		sessions*int64(len(kill)) + 4096 + // queued SIGKILLs
		2*sessions*sessionEntryBytes + // session table: open and quarantined
		(sessions+2*int64(o.MaxSessions))*qentryBytes + // quarantine FIFO, stale entries compacted
		int64(o.AcceptQueue)*waiterBytes + // waiting connections
		logQueueLen*logRecordBytes // log queue
	if c := o.Console; c != nil && c.Tx != nil && c.Rx != nil {
		b += int64(c.Tx.Cap() + c.Rx.Cap())
	}
	return b
}
