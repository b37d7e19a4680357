package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/agentrelay/agentrelay/ring"
)

// ServeConsole serves one connection on the guest side of c (it produces Tx
// and consumes Rx), as the relay's builtin guest does. It returns nil for
// core.shutdown as for a hang-up (the host closed Rx), and has ended c's
// guest side when it returns: the relay reads EOF from Tx, and its writes
// to Rx fail.
func (ag *Agent) ServeConsole(ctx context.Context, c *ring.Console) error {
	err := ag.Serve(ctx, consoleConn{c.Backend()})
	switch {
	case errors.Is(err, ErrShutdown):
		return nil
	case errors.Is(err, ring.ErrClosed) && ctx.Err() == nil:
		return fmt.Errorf("agent: relay stopped reading the console: %w", err)
	}
	return err
}

type consoleConn struct{ *ring.Backend }

func (c consoleConn) Close() error {
	c.CloseRead()
	c.CloseWrite()
	return nil
}
