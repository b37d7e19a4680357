package ring

import (
	"errors"
	"time"
)

// A Console is the shared state between the relay and the VMM's console
// device: Tx carries guest→host bytes (named from the guest's side, as in
// the original), Rx host→guest bytes. The relay consumes Tx and produces Rx;
// the Backend does the opposite.
type Console struct {
	Tx, Rx  *Ring
	backend Backend
}

// NewConsole allocates both rings with the given capacity (0 means
// DefaultCapacity) and their wake pipes.
func NewConsole(capacity int) (*Console, error) {
	tx, err := New(capacity)
	if err != nil {
		return nil, err
	}
	rx, err := New(capacity)
	if err != nil {
		tx.Close()
		return nil, err
	}
	c := &Console{Tx: tx, Rx: rx}
	c.backend = Backend{tx: tx, rx: rx}
	return c, nil
}

// Backend returns the VMM device side of the console. There is one Backend
// per Console; every call returns the same one.
func (c *Console) Backend() *Backend { return &c.backend }

// Close frees both rings' wake pipes; both sides must be done.
func (c *Console) Close() error {
	return errors.Join(c.Tx.Close(), c.Rx.Close())
}

// A Backend is the console device as the VMM (or a guest transport standing
// in for one) drives it: it produces Tx and consumes Rx. One goroutine may
// write while another reads.
type Backend struct {
	tx, rx *Ring
}

// Write pushes bytes written by the guest into Tx, blocking while the ring
// is full until all of p is in; it never drops. It fails with ErrClosed if
// the relay stopped reading (Tx.CloseRead) or after CloseWrite.
func (b *Backend) Write(p []byte) (int, error) {
	return b.tx.writeAll(p, time.Time{})
}

// Read copies bytes destined for the guest out of Rx, blocking until some
// are there. It returns io.EOF once the relay closed Rx (Rx.CloseWrite) and
// everything before has been read, and ErrClosed after CloseRead.
func (b *Backend) Read(p []byte) (int, error) {
	return b.rx.Read(p, time.Time{})
}

// TryWrite writes what fits of p without blocking. It fails with ErrClosed
// if the relay stopped reading or after CloseWrite.
func (b *Backend) TryWrite(p []byte) (int, error) {
	if b.tx.rclosed.Load() || b.tx.wclosed.Load() {
		return 0, ErrClosed
	}
	return b.tx.Write(p), nil
}

// TryRead reads what is there without blocking; 0, nil means nothing yet.
func (b *Backend) TryRead(p []byte) (int, error) {
	return b.rx.TryRead(p)
}

// ReadFd is readable when bytes for the guest may have arrived, after
// ArmRead returned true; a VMM polling it drains it with DrainRead.
func (b *Backend) ReadFd() int { return b.rx.DataFd() }

// WriteFd is readable when Tx may have room again, after ArmWrite returned
// true; a VMM polling it drains it with DrainWrite.
func (b *Backend) WriteFd() int { return b.tx.SpaceFd() }

// ArmRead is Rx.ArmData: false means there is something to read already.
func (b *Backend) ArmRead() bool { return b.rx.ArmData() }

// ArmWrite is Tx.ArmSpace: false means there is room already.
func (b *Backend) ArmWrite() bool { return b.tx.ArmSpace() }

// DrainRead empties ReadFd's pipe after a wake-up.
func (b *Backend) DrainRead() { b.rx.DrainData() }

// DrainWrite empties WriteFd's pipe after a wake-up.
func (b *Backend) DrainWrite() { b.tx.DrainSpace() }

// CloseWrite says the guest's stream ended: the relay reads EOF from Tx
// once it has everything before. Any goroutine; a blocked Write fails.
func (b *Backend) CloseWrite() { b.tx.CloseWrite() }

// CloseRead says the guest no longer reads: the relay's writes to Rx fail
// with ErrClosed from now on. Any goroutine; a blocked Read returns.
func (b *Backend) CloseRead() { b.rx.CloseRead() }
