// Package baseline is a goroutine-per-connection port of microsandbox 0.4.4's
// relay, kept as the benchmark baseline for the reactor relay (package
// relay): same options, same embedding API, same conformance suite, and the
// original's task design, flaws included, so that what the benchmarks
// measure is the difference in design.
//
// The tasks of the original map onto goroutines one to one:
//
//   - an accept loop: lowest free slot, the handshake ([offset u32 BE] then
//     the cached core.ready frame) written directly, then a writer and a
//     reader goroutine for the client;
//   - per client, a reader that reads each frame from the socket into its own
//     allocation (a 4-byte read, then the rest: no buffering) and queues it
//     for the guest, and a writer that drains a bounded channel of 64 frames
//     with one write per frame;
//   - one guest writer behind a channel of 256 frames that pushes each frame
//     whole into the Rx ring;
//   - one guest reader that sleeps on the Tx ring's wake, takes everything
//     the ring holds, copies each frame into its own allocation, and routes
//     it by id range through the mutex-guarded client table.
//
// The original's flaws (PROTOCOL.md, "What the original gets wrong") are
// kept on purpose:
//
//   - a frame for the guest that finds the Rx ring full is retried 50 times,
//     1 ms apart, and then dropped (DroppedToGuest counts them);
//   - a client whose channel is full blocks the guest reader, and with it
//     every other client (head-of-line blocking; GuestStallNanos);
//   - client frames are forwarded under any id, and a reused slot receives
//     the late frames of its previous client's sessions;
//   - a 17th client is closed without a word;
//   - a guest len field above 4 MiB clears the whole reassembly buffer, and
//     one below 5 discards its frame and ends extraction until the guest's
//     next write, leaving the frames behind it waiting;
//   - every SESSION_START frame is decoded in full to spot exec requests,
//     and with an exec.log writer so is every guest frame; without a writer
//     the session registry is never emptied;
//   - WaitReady fails if a frame before core.ready does not decode, and
//     drops bytes read in the same batch after core.ready;
//   - the socket's mode is left to the umask.
//
// A few things differ, none of them on the measured paths' costs except the
// first, which favours the baseline: the client→guest path allocates each
// frame once (the original copies it once more, from Bytes into a Vec); a
// frame larger than the whole Rx ring (the original's ring is a queue of
// chunks of any size) waits for an empty ring and is then written as the
// guest drains it; a client enters the table before its handshake is written,
// not after, so guest frames sent right after the handshake are not lost;
// and Stop, or the end of the guest stream, flushes what is queued to
// clients for up to 5 s and closes them (the original aborts its tasks), so
// that Run leaves no goroutine behind.
package baseline
