// Package relay is the agent relay's policy: it multiplexes up to 16 clients
// on a Unix socket onto the one ordered byte stream of a guest's console.
//
// It runs on a [reactor.Loop] (one goroutine locked to one OS thread, epoll,
// edge-triggered) and owns everything the loop touches, so nothing in it is
// locked. Data flows socket → reactor → relay → ring → guest, and back:
//
//   - Client → guest: each client has an input buffer of at most one frame
//     (allocated with its slot, grown on demand, see below); complete
//     frames are checked (the id must lie in the client's own range, or be 0
//     with SHUTDOWN, and must not name a session a departed client of the
//     slot left running), session-tracked and copied into the console's Rx ring
//     whole, one client at a time, round-robin. When Rx is full the relay
//     stops reading clients (their sockets push back) and resumes where it
//     left off when the guest drains it: nothing is ever dropped.
//   - Guest → client: frames are routed straight from the Tx ring's readable
//     span (or, when a frame wraps the ring's end, from one staging buffer) by
//     correlation-id range into the client's bounded output buffer, and every
//     dirty client is flushed with one write per loop iteration.
//
// Where the original (microsandbox 0.4.4) loses data or lets one party hurt
// another, this package does better; see README.md and PROTOCOL.md's last
// section: no host→guest drops, bounded slow-client stalls with eviction,
// id-range enforcement, quarantine of a departed client's sessions, an accept
// queue for the 17th client, resynchronisation on corrupt guest framing, and
// an exec.log tap that never touches the disk from the loop.
//
// Memory is bounded by Options. The 16 slots' buffers are allocated with
// the relay at 64 KiB each and grown, by doubling, only when a frame does not
// fit, up to their bounds; they are never shrunk and pass from a slot's
// client to the next, so steady traffic does not allocate. The staging
// buffer is allocated whole but untouched pages cost no RSS. For
// C = frame.MaxClients = 16, the relay holds at most
//
//	C × (ClientBuffer + frame.MaxFrame)   every slot's output and input buffer
//	+ 3 × frame.MaxFrame                   guest staging buffer, spill (the rest of a
//	                                       departed client's half-written frame),
//	                                       the cached core.ready
//	+ C × MaxSessions × 44 B + 4 KiB       queued SIGKILLs (44 B each)
//	+ 2 × C × MaxSessions × 80 B           session table: open sessions (MaxSessions
//	                                       per client) and quarantined ones (a slot's
//	                                       open + quarantined ≤ MaxSessions: starts
//	                                       beyond are refused, never released early)
//	+ (C + 2) × MaxSessions × 100 B        the quarantine's expiry queue (stale
//	                                       entries compacted past MaxSessions)
//	+ AcceptQueue × 64 B                   waiting connections (and one fd each)
//	+ 4096 × 1 KiB                         log records queued for the log goroutine
//	+ 2 × ring capacity                    the console (owned by the caller)
//
// which [Options.MemoryBound] computes, plus the exec.log writer's (owned by
// the caller: [execlog.Writer.MemoryBound], a buffer per lane and a line of up
// to 6 × half a lane, every byte escaped). Kernel socket buffers are not the
// process's memory. With the defaults (ClientBuffer 8 MiB, MaxSessions 4096,
// AcceptQueue 64, 1 MiB rings, exec.log's two 4 MiB lanes in the binary):
//
//	192 + 12 + 2.75 + 10 + 7.0 + 0 + 4 = 227.8 MiB   the relay
//	+ 2 MiB                                          the console
//	+ 21.1 MiB                                       exec.log
//	= 250.9 MiB
//
// That bounds live memory. The garbage collector, left to GOGC, lets the heap
// reach twice what was live at its last cycle, and buffers outgrown, exec.log
// lines and log records leave garbage; so the binary (cmd/relay) sets the
// runtime's memory limit to the bound plus 32 MiB, unless GOMEMLIMIT is set.
// Its idle RSS is about 13 MiB (10 MiB of it the binary's code); flooded from
// every side at once it peaks at about 265 MiB (cmd/relay's TestMemoryBound),
// where without the limit it reached 310 MiB.
package relay
