// Package relay is the agent relay's policy: it multiplexes up to 128 clients
// on a Unix socket onto the one ordered byte stream of a guest's console, for
// one sandbox or, on a shared [Loop], for each of a host's sandboxes.
//
// It runs on a [reactor.Loop] (one goroutine locked to one OS thread, epoll,
// edge-triggered) and owns everything the loop touches, so nothing in it is
// locked. Data flows socket → reactor → relay → guest port → guest, and back.
// The guest is reached through one of two ports (port.go):
//
//   - the fd port ([Options.Guest]): the guest's console socket (QEMU's
//     chardev, hybrid vsock) is one more fd in the loop;
//   - the ring port ([Options.Console]): a [ring.Console] with wake pipes,
//     for a VMM that embeds the relay and for the in-process guests.
//
// Each loop pass (service) runs in fixed phases: accept; host → guest; guest
// → clients; the SIGKILLs of clients that left; freed slots to waiting
// connections; one write per client with output; then it decides whether
// the loop may sleep. Each phase has a budget, so one pass is bounded.
//
//   - Client → guest: each client has an input buffer of at most one frame
//     (allocated with its slot, grown on demand, see below). Each readable
//     client gets one read per pass, round-robin; its complete frames are
//     checked (the id must lie in the client's own range, or be 0 with
//     SHUTDOWN, and must not name a session a departed client of the slot
//     left running), session-tracked and queued where they lie. Everything
//     queued then goes to the guest whole, with one writev on the fd port
//     (a copy into the Rx ring on the ring port), frames of different
//     clients never interleaved. When the guest takes no more the rest
//     stays queued, no client is read (their sockets push back) and writing
//     resumes when the guest makes room: nothing is ever dropped.
//   - Guest → client: on the fd port guest bytes are read into one buffer
//     and frames are routed as views of it; on the ring port, straight from
//     the Tx ring's readable span (or, when a frame wraps the ring's end,
//     from one staging buffer). Each frame goes by correlation-id range to
//     its client: on the fd port, runs of contiguous frames for a client with
//     nothing queued are written to its socket straight from the read buffer;
//     otherwise, and for what a socket does not take, into the client's
//     bounded output buffer, flushed with one write per pass.
//
// Where the original (microsandbox 0.4.4) loses data or lets one party hurt
// another, this package does better; see README.md and PROTOCOL.md's last
// section: no host→guest drops, bounded slow-client stalls with eviction,
// id-range enforcement, quarantine of a departed client's sessions, an accept
// queue for the 17th client, resynchronisation on corrupt guest framing, and
// an exec.log tap that never touches the disk from the loop.
//
// Relays run on a [Loop]: one reactor, one OS thread, one buffer pool, one
// log queue and its goroutine, shared by every relay on it (a host daemon
// runs one Loop per CPU; [New] gives a relay a Loop of its own, so `relay
// serve` is a host of one sandbox). A pass of the loop services only the
// relays that had an event, a timer or unfinished work, each within its
// share of the pass's budget, so idle sandboxes cost no time and a busy one
// cannot hold up the others for more than its share.
//
// Memory follows activity and is bounded by Options. A relay that has no
// client and a quiet guest holds about 6 KiB (TestLoopIdleRelayHeap): a
// slot's conn (0.3 KiB) is made for its first client, and every buffer is
// lent by the loop's pool ([bufpool.Pool]) only while it holds bytes: the
// fd port's read buffer (256 KiB) and a client's input and output buffers
// (64 KiB each when taken) go back once they have stayed empty for 50 ms (the
// relay's sweep; a read buffer taken for a read that found nothing goes back
// at once), so a streaming sandbox reuses its own and an idle one holds none. A client's input buffer is given back when it leaves once the
// guest has every frame queued in it (its slot is reused only then). Buffers
// grow by doubling only when a frame does not fit, up to their own bounds,
// and the growth is charged to two relay-wide budgets (OutputBudget,
// InputBudget; a host's Budget above them, if set); a grown buffer that
// empties shrinks back, so the budgets follow what is queued now. Steady
// traffic does not allocate. The ring port's staging buffer is made by the
// first frame that wraps the ring. With C slots (16 in the 0.4 form, 128 in
// the 0.5 form; MemoryBound takes 128 unless the 0.4 form is forced) and
// S = MaxSessionsTotal, a relay holds at most
//
//	C × (2 × 64 KiB + 0.4 KiB)             every attached client's first buffers, its conn
//	+ OutputBudget + InputBudget           what they grow by, all together
//	+ 2 × frame.MaxFrame                   the guest read buffer (fd port) or staging
//	                                       buffer (ring port), the cached core.ready
//	+ S × 44 B + C × 64 B + 4 KiB          queued SIGKILLs (44 B each) and disconnect
//	                                       notices
//	+ 2 × S × 80 B                         session table (open and quarantined; a
//	                                       slot's open + quarantined ≤ MaxSessions and
//	                                       all ≤ S: starts beyond are refused, never
//	                                       released early)
//	+ (S + 2 × MaxSessions) × 100 B        the quarantine's expiry queue (stale
//	                                       entries compacted past MaxSessions)
//	+ AcceptQueue × 64 B                   waiting connections (and one fd each)
//
// and its Loop, once however many relays it serves,
//
//	4096 × 1 KiB                           log records queued for the log goroutine
//	+ PoolIdle (16 MiB)                    idle buffers the pool keeps for reuse
//	+ 2 × ring capacity                    the console (ring port only; the caller's)
//
// which [Options.MemoryBound] computes for a relay on a Loop of its own, plus the exec.log writer's (owned by
// the caller: [execlog.Writer.MemoryBound], a buffer per lane and a line of up
// to 6 × half a lane, every byte escaped). Kernel socket buffers are not the
// process's memory. With the defaults (OutputBudget 64 MiB, InputBudget 32
// MiB, MaxSessions 4096, S 65536, AcceptQueue 64, 1 MiB rings, exec.log's two
// 4 MiB lanes in the binary):
//
//	0.5 form: 16.05 + 96 + 8 + 2.76 + 10 + 6.8 + 0 + 4 + 16 = 159.8 MiB   the relay
//	0.4 form:  2.01 + 96 + 8 + 2.75 + 10 + 6.8 + 0 + 4 + 16 = 145.8 MiB
//	+ 2 MiB (the console, ring port only) + 21.1 MiB (exec.log)
//
// 128 slots cost 14 MiB more than 16, not 8 times as much: the budgets, not
// the slot count, bound what buffers may hold.
//
// That bounds live memory. The garbage collector, left to GOGC, lets the heap
// reach twice what was live at its last cycle, and buffers outgrown, exec.log
// lines and log records leave garbage; so the binary (cmd/relay) sets the
// runtime's memory limit to the bound plus 32 MiB, unless GOMEMLIMIT is set.
// Its idle RSS is about 13 MiB (10 MiB of it the binary's code); flooded from
// every side at once it peaks at about 265 MiB (cmd/relay's TestMemoryBound),
// where without the limit it reached 310 MiB.
package relay
