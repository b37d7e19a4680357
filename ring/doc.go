// Package ring implements the guest console's shared rings: two
// single-producer single-consumer byte rings (guest→host Tx, host→guest Rx)
// with the wake pipes that let either side sleep in epoll or poll.
//
// It is the Go counterpart of microsandbox's ConsoleSharedState (tx_ring,
// rx_ring, tx_wake, rx_wake), with three differences that matter to the
// relay: a ring is one fixed byte buffer allocated once instead of a queue of
// heap chunks; a full ring is back-pressure, never a reason to drop (Write
// returns how much fitted and the producer sleeps on SpaceFd until the
// consumer makes room); and a wake byte is written only when the other side
// has said it is about to sleep, not once per chunk.
//
// # Positions
//
// Head and tail are monotonically increasing uint64 byte counts, masked into
// the power-of-two buffer. The producer alone stores tail, the consumer alone
// stores head, so Len is tail-head and Free is capacity-Len without any
// lock. A uint64 does not wrap in the lifetime of a sandbox.
//
// # Wake protocol
//
// Each ring has two wake pipes: data (the consumer sleeps on DataFd) and
// space (the producer sleeps on SpaceFd). A side that wants to sleep first
// announces it, then looks again:
//
//	consumer                         producer
//	ArmData:  waiting = 1            Write:  tail = t+n
//	          if tail != head        then    if waiting == 1 &&
//	             waiting = 0,                   CAS(waiting, 1, 0)
//	             don't sleep                    write wake byte
//	          else sleep on DataFd
//
// Both sides store one variable and then load the other's (a Dekker
// handshake), and Go's sync/atomic operations are sequentially consistent,
// so in the single total order of those four operations either the
// consumer's store of waiting comes before the producer's load of it (the
// producer sees 1 and writes the wake byte, which is in the pipe before or
// after the consumer reaches poll, either way poll returns), or the
// producer's load comes first, in which case the producer's store of tail
// comes before the consumer's load of tail (the consumer sees the data and
// does not sleep). There is no third order, so no wake-up is lost. The
// space direction is the mirror image: ArmSpace by the producer, checked
// by Consume; CloseWrite and CloseRead take part in the same handshake as a
// store of tail and head do.
//
// A wake byte can arrive that nobody needs any more: the consumer armed,
// then found data itself and disarmed while the producer had already
// claimed the flag. Such a byte costs one spurious wake-up and nothing else,
// because every wake-up is followed by a re-check of the ring.
//
// # Using the protocol from an event loop
//
// The relay watches DataFd of Tx (and SpaceFd of Rx) with edge-triggered
// epoll. An edge is reported once per empty→non-empty transition of the pipe,
// so after every event the pipe must be drained before the ring is
// re-checked, or a later wake byte may land in a non-empty pipe and produce
// no edge:
//
//	tx.DrainData()
//	for {
//		for p := tx.Readable(); len(p) > 0; p = tx.Readable() {
//			n := use(p)
//			tx.Consume(n)
//		}
//		if !tx.ArmData() {
//			continue // data or EOF arrived meanwhile
//		}
//		break // back to epoll_wait
//	}
//
// Goroutine producers and consumers use the blocking helpers WriteAll and
// Read instead, which run the same protocol around poll(2).
//
// # Frames that wrap
//
// The readable bytes are one or two spans (Peek); Readable returns the first
// without copying. A frame that straddles the end of the buffer is copied
// out with CopyOut into a caller-owned linear scratch buffer (at most one
// frame long) and then consumed; every other frame is used in place.
//
// # Ownership
//
// One goroutine at a time may act as producer (Write, Writable, Commit,
// Free, ArmSpace, WriteAll, DrainSpace) and one as consumer (Readable, Peek,
// CopyOut, Consume, Len, ArmData, Read, DrainData). CloseWrite, CloseRead,
// Closed, ReadClosed and Stats may be called from anywhere. Close frees the
// pipes and is for when both sides are done.
package ring
