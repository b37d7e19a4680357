package relay

import (
	"log/slog"
	"os"
	"time"

	"github.com/agentrelay/agentrelay/bufpool"
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
	// Guest is the guest's console as a connected stream socket: QEMU's
	// chardev or a hybrid vsock connection after its CONNECT exchange. The
	// relay takes ownership, makes it non-blocking and serves it from its
	// loop (the fd port). Exactly one of Guest and Console is set.
	Guest *os.File
	// Console carries the guest's byte streams through rings, for a guest
	// in the same process (an embedding VMM, the echo and builtin guests):
	// the relay consumes Tx and produces Rx (the ring port).
	Console *ring.Console
	// ExecLog, if set, receives exec sessions' stdout/stderr. The relay
	// appends through a lock-free lane and never waits for the disk.
	ExecLog *execlog.Writer
	// Logger receives structured logs; the loop hands records to a
	// goroutine, so logging never blocks the loop. Default: slog.Default().
	Logger *slog.Logger

	// Handshake is the form of the clients' handshake: HandshakeAuto (the
	// default) follows the guest's core.ready.
	Handshake Handshake

	// ReadyTimeout bounds the wait for core.ready. Default 60 s.
	ReadyTimeout time.Duration
	// ClientBuffer bounds each client's output buffer. Default 8 MiB; at
	// least frame.MaxFrame.
	ClientBuffer int
	// OutputBudget bounds what all clients' output buffers hold beyond
	// their first 64 KiB each. A frame that does not fit holds up the guest
	// stream like a full client buffer, charged to the client holding the
	// most (evicted after EvictGrace). Default 64 MiB; at least
	// ClientBuffer.
	OutputBudget int64
	// InputBudget bounds what all clients' input buffers hold beyond their
	// first 64 KiB each (frames larger than that, being read). A client
	// whose frame does not fit is not read until it does. Default 32 MiB;
	// at least two maximum frames.
	InputBudget int64
	// Pool lends the clients' buffers. A host daemon shares one per loop;
	// nil gives the relay its own.
	Pool *bufpool.Pool
	// Budget, if set, is charged everything OutputBudget and InputBudget
	// are: a bound shared by the relays of a host.
	Budget *bufpool.Budget
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
	// MaxSessionsTotal bounds the sessions of all clients, open and
	// quarantined, so that 128 slots do not multiply the session tables by
	// 8. Default 65536 (16 × 4096).
	MaxSessionsTotal int
	// AllowUIDs lists the peer uids allowed to connect. Default: the relay's
	// own effective uid and root.
	AllowUIDs []uint32
	// DrainTimeout bounds how long Stop waits to flush what is queued to
	// clients. Default 5 s.
	DrainTimeout time.Duration
	// OnDone, if set, runs once the relay has ended and its socket is
	// removed, just before Done is closed, on the loop's side goroutine
	// (never the loop thread): the owner's cleanup, such as flushing
	// exec.log, without a goroutine per relay waiting on Done. It may do
	// disk I/O but holds up the loop's other teardowns while it runs.
	OnDone func()
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
	if o.OutputBudget <= 0 {
		o.OutputBudget = 64 << 20
	}
	if o.InputBudget <= 0 {
		o.InputBudget = 32 << 20
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
	if o.MaxSessionsTotal <= 0 {
		o.MaxSessionsTotal = 16 * 4096
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
	connBytes         = 400     // one slot's conn (328 B), with the allocator's rounding
)

// MemoryBound returns the most memory a Relay built with o can hold, with
// every buffer at its bound and every table full, by the formula in the
// package documentation, for the form with the most slots o allows (128
// unless Handshake04 is forced). It counts the console's rings when
// o.Console is set, the relay's own pool when o.Pool is nil, and not the
// exec.log writer, whose owner adds execlog.Writer.MemoryBound.
func (o Options) MemoryBound() int64 {
	o.setDefaults()
	clients := int64(MaxSlots)
	if o.Handshake == Handshake04 {
		clients = frame.MaxClients
	}
	sessions := int64(o.MaxSessionsTotal)
	kill, _ := frame.AppendMessage(nil, 0, frame.TypeExecSignal, frame.ExecSignal{Signal: 9})
	b := clients*(2*initialBuffer+connBytes) + // every attached client's first input and output buffer, its conn
		o.OutputBudget + o.InputBudget + // what they may grow by, all together
		2*frame.MaxFrame + // guest read or staging buffer, cached core.ready
		sessions*int64(len(kill)) + clients*64 + 4096 + // queued SIGKILLs and disconnect notices
		2*sessions*sessionEntryBytes + // session table: open and quarantined
		(sessions+2*int64(o.MaxSessions))*qentryBytes + // quarantine FIFO, stale entries compacted
		int64(o.AcceptQueue)*waiterBytes + // waiting connections
		logQueueLen*logRecordBytes // log queue
	if o.Pool == nil {
		b += defaultPoolIdle
	}
	if c := o.Console; c != nil && c.Tx != nil && c.Rx != nil {
		b += int64(c.Tx.Cap() + c.Rx.Cap())
	}
	return b
}
