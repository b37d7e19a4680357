// Package client is the Go SDK for talking to a guest agent through the relay:
// it dials the relay's Unix socket, performs the 0.4.4 handshake (id offset,
// then the cached core.ready frame), allocates correlation ids inside the
// slot's range and demultiplexes the guest's replies by id.
//
// A Conn made by Dial runs one reader goroutine that routes every incoming
// frame to the Stream subscribed to its id; Exec builds a whole process
// session (request, stdin, stdout/stderr, exit code) on top of that. A Conn
// made by DialRaw starts no goroutine at all and leaves reading to the caller
// through ReadFrame, so that benchmarks measure the relay and not this package.
//
// Back-pressure rather than loss: each Stream buffers a bounded number of
// bytes. When a consumer does not keep up, the reader blocks on that Stream,
// which stalls every Stream of the same Conn and, through the socket, the
// relay's writes to this client. Nothing is dropped except frames for ids that
// nobody subscribed to (counted by Conn.Dropped).
package client
