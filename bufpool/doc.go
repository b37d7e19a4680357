// Package bufpool lends byte buffers to the code running on one event loop,
// so that what a relay holds follows what its clients are doing rather than
// how many of them it could serve. A Pool belongs to one loop: it is not
// locked, and every sandbox on that loop may share it. A Budget caps what a
// group of buffers may hold in all; it is safe for concurrent use, so one
// host-wide budget can bound the relays of every loop.
package bufpool
