package guest

import (
	"context"
	"fmt"

	"github.com/agentrelay/agentrelay/agent"
	"github.com/agentrelay/agentrelay/ring"
)

// DefaultReady returns a core.ready frame with plausible boot timings (a
// microVM that booted in 118 ms), for the in-process guests: the agent's.
func DefaultReady() []byte { return agent.DefaultReady() }

// Echo is the benchmarks' guest: it writes ready (DefaultReady() if empty)
// and then reflects every host→guest byte back, so every frame returns
// unchanged, in order, under its own id.
//
// Frames go back unchanged, so Echo never parses them: it copies Rx's
// readable span into Tx in one Write and consumes what fitted, batches as
// large as the rings allow, no allocation. A full Tx makes it wait for
// space; nothing is dropped.
//
// Echo returns nil when the host closed Rx and everything before it was
// reflected, ctx.Err() when ctx ends, and ring.ErrClosed (wrapped) if the
// relay stopped reading Tx. It closes Tx for writing and Rx for reading on
// return.
func Echo(ctx context.Context, c *ring.Console, ready []byte) error {
	s, err := newStopper(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	defer c.Rx.CloseRead()
	defer c.Tx.CloseWrite()

	if len(ready) == 0 {
		ready = DefaultReady()
	}
	if err := s.writeAll(c.Tx, ready); err != nil {
		return echoErr(ctx, err)
	}
	rx, tx := c.Rx, c.Tx
	for {
		// Closed before Readable: if the close is seen, so is every byte
		// written before it.
		closed := rx.Closed()
		p := rx.Readable()
		if len(p) == 0 {
			if closed {
				return nil
			}
			if err := s.waitData(rx); err != nil {
				return echoErr(ctx, err)
			}
			continue
		}
		n := tx.Write(p)
		if n == 0 {
			if tx.ReadClosed() || tx.Closed() {
				return echoErr(ctx, ring.ErrClosed)
			}
			if err := s.waitSpace(tx); err != nil {
				return echoErr(ctx, err)
			}
			continue
		}
		rx.Consume(n)
	}
}

func echoErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("guest: echo: %w", err)
}
