// Package host serves many sandboxes from one process: the relay host
// daemon. Each sandbox is a relay (one guest console, one client socket)
// placed on the least-loaded of N relay.Loops and kept there; the daemon
// keeps a registry of them by name, persists their specs in a state file so
// a restarted daemon re-attaches to running VMs, and offers a control API,
// HTTP/JSON on a Unix socket (Handler, Client), in the convention of the
// Firecracker and Docker APIs:
//
//	PUT    /sandboxes/{name}   {"guest","socket","exec_log","handshake","ready_timeout"} → 201 + Info
//	DELETE /sandboxes/{name}   → 204 once its clients are closed, socket removed, exec.log flushed
//	GET    /sandboxes          → 200 + [Info]
//	GET    /sandboxes/{name}   → 200 + Info
//
// Errors are {"message": "..."} with 400 (bad name or body, unknown guest
// spec, unsafe socket path), 403 (--max-sandboxes reached), 404, 405, 409
// (name taken, socket or exec.log directory in use), 502 (the guest cannot
// be reached) or 503 (out of file descriptors). A request that fails leaves
// nothing behind: no socket, no entry, no descriptor.
//
// The guest is dialled on the API's goroutine, never on a loop.
//
// Memory follows activity, not the number of sandboxes: an idle sandbox (no
// client, quiet guest) holds about 6 KiB of heap (relay's
// TestLoopIdleRelayHeap; 17–21 KiB of RSS each in make bench, the garbage
// collector's headroom included) and two descriptors, and every buffer is
// lent by its loop's pool only while it holds bytes. With L loops, N
// sandboxes of which A have clients or traffic, and every relay's buffer
// growth charged to one host-wide bufpool.Budget (Options.MemoryBudget)
// above each sandbox's own budgets, the daemon holds at most
//
//	L × (4 MiB + PoolIdle)                   each loop's log queue and idle buffers
//	+ N × 6 KiB                              every sandbox's relay, idle
//	+ Σ over the A active sandboxes of their fixed part
//	                                         (relay.Options.MemoryBound less the two
//	                                         budgets and the loop's share: first
//	                                         buffers of attached clients, the guest
//	                                         read buffer, session tables)
//	+ min(MemoryBudget, Σ sandboxes' OutputBudget + InputBudget)
//	+ 4 MiB × sandboxes with an exec.log that ran a command (a lane each;
//	                                         one Runner goroutine a loop writes them)
//
// (see relay/doc.go for each term). Threads do not grow with sandboxes: one
// per loop and the Go runtime's, 12 here at 1,000 or 9,872 sandboxes on 2
// CPUs. After a burst of removals the loops drop their pools' idle buffers
// and freed pages go back to the system (trim.go).
package host
