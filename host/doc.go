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
// The guest is dialled on the API's goroutine, never on a loop. Every
// relay's client buffers are charged to one host-wide bufpool.Budget
// (Options.MemoryBudget) above each sandbox's own bounds, so the host's
// memory is bounded by
//
//	min(MemoryBudget, Σ sandboxes' growth bounds) + Σ sandboxes' fixed parts
//
// where a sandbox's growth bound is its OutputBudget + InputBudget and its
// fixed part is relay.Options.MemoryBound less those two (see relay/doc.go).
package host
