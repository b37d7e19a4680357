// Package relay is the agent relay's policy: it multiplexes up to 16 clients
// on a Unix socket onto the one ordered byte stream of a guest's console.
//
// It runs on a [reactor.Loop] (one goroutine locked to one OS thread, epoll,
// edge-triggered) and owns everything the loop touches, so nothing in it is
// locked. Data flows socket → reactor → relay → ring → guest, and back:
//
//   - Client → guest: each client has a preallocated input buffer; complete
//     frames are checked (the id must lie in the client's own range, or be 0
//     with SHUTDOWN), session-tracked and copied into the console's Rx ring
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
// Memory is bounded by Options: for C = 16 clients,
//
//	C × (ClientBuffer + frame.MaxFrame)   client output and input buffers
//	+ frame.MaxFrame                       guest staging buffer
//	+ 2 × ring capacity                    the console (owned by the caller)
//	+ AcceptQueue × (one fd)               held connections
//	+ exec.log buffer                      (owned by the caller's execlog.Writer)
//
// plus the session table, itself bounded by C × MaxSessions entries and the
// quarantine (sessions of departed clients, each at most QuarantineTimeout).
package relay
