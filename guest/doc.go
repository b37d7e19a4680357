// Package guest provides the guest side of the console: the echo stand-in
// for tests and benchmarks, the transports that connect a real guest's
// console to the relay, and the --guest flag that picks one.
//
// In a ring.Console, Tx carries guest→host bytes and Rx host→guest bytes; a
// guest is Tx's producer and Rx's consumer. Frame boundaries are not kept in
// the rings, so every guest here treats them as byte streams.
//
// The guests:
//
//   - Echo reflects every host→guest frame back unchanged. It is the guest
//     of the benchmarks: bytes move in ring-sized batches, with no per-frame
//     work and no allocation.
//   - builtin runs package agent's Agent in-process: the guest agent, but
//     running commands on the HOST, as host processes with the relay's
//     privileges (see agent.Warning).
//
// The transports connect a real guest: DialUnix for a console exposed as a
// listening Unix socket (QEMU -chardev socket,server=on), DialVsock for
// Firecracker and Cloud Hypervisor hybrid vsock, and Pump to move bytes
// between the connection and the rings. ParseSpec and Start turn the relay
// binary's --guest flag into a running guest.
//
// Whenever a guest here stops, it ends its side of the console: it closes
// Tx for writing (the relay reads EOF after the last byte) and Rx for
// reading (the relay's writes fail instead of filling a ring nobody reads).
package guest
