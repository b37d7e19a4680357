package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/agentrelay/agentrelay/ring"
)

// Pump connects a real guest's console connection to c: guest bytes from
// conn go into Tx, host bytes from Rx go to conn, each direction in its own
// goroutine and neither ever dropping (a full Tx stops reading conn, an
// unread conn stops consuming Rx).
//
// When conn reaches EOF or fails, Pump closes Tx for writing, so the relay
// sees the guest's stream end after its last byte, and returns. When the
// host closes Rx, Pump forwards what is left, closes conn and returns. When
// ctx ends, Pump closes conn and returns ctx.Err(). It returns nil for the
// two orderly ends. Either way it closes Rx for reading on return: nobody
// is left to consume it.
func Pump(ctx context.Context, conn net.Conn, c *ring.Console) error {
	s, err := newStopper(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	// Closing conn is what interrupts a Read or a Write blocked in it.
	stopConn := context.AfterFunc(ctx, func() { conn.Close() })
	defer stopConn()

	var (
		wg         sync.WaitGroup
		outErr     error
		hostClosed bool
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		hostClosed, outErr = pumpToGuest(s, c.Rx, conn)
		// Ends the other direction too: conn is of no use half-dead.
		conn.Close()
	}()
	inErr := pumpFromGuest(s, conn, c.Tx)
	c.Tx.CloseWrite()
	s.Stop()
	conn.Close()
	wg.Wait()
	c.Rx.CloseRead()

	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case inErr == nil || errors.Is(inErr, io.EOF):
		return nil
	case hostClosed:
		return nil
	case outErr != nil && !errors.Is(outErr, errStopped):
		return fmt.Errorf("guest: write to guest: %w", outErr)
	case errors.Is(inErr, ring.ErrClosed):
		return fmt.Errorf("guest: relay stopped reading the console: %w", inErr)
	}
	return fmt.Errorf("guest: read from guest: %w", inErr)
}

// pumpFromGuest reads conn straight into Tx's free span, so a guest byte is
// copied once, by the kernel.
func pumpFromGuest(s *stopper, conn net.Conn, tx *ring.Ring) error {
	for {
		w := tx.Writable()
		if len(w) == 0 {
			if tx.ReadClosed() || tx.Closed() {
				return ring.ErrClosed
			}
			if err := s.waitSpace(tx); err != nil {
				return err
			}
			continue
		}
		n, err := conn.Read(w)
		tx.Commit(n)
		if err != nil {
			return err
		}
	}
}

// pumpToGuest writes Rx's readable span straight to conn. It reports
// hostClosed when Rx ended and everything before went out.
func pumpToGuest(s *stopper, rx *ring.Ring, conn net.Conn) (hostClosed bool, err error) {
	for {
		// Closed before Readable: if the close is seen, so is every byte
		// written before it.
		closed := rx.Closed()
		p := rx.Readable()
		if len(p) == 0 {
			if closed {
				return true, nil
			}
			if err := s.waitData(rx); err != nil {
				return false, err
			}
			continue
		}
		n, err := conn.Write(p)
		rx.Consume(n)
		if err != nil {
			return false, err
		}
	}
}
