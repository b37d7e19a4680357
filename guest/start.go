package guest

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/agentrelay/agentrelay/agent"
	"github.com/agentrelay/agentrelay/ring"
)

// Options configure Start.
type Options struct {
	// Ready is the core.ready frame of the in-process guests; empty means
	// DefaultReady(). A real guest sends its own.
	Ready []byte
	// Agent configures the builtin guest (Ready above wins over
	// Agent.Ready when set).
	Agent agent.Options
	// DialTimeout bounds how long unix: and vsock: keep retrying to
	// connect; 0 means until ctx ends.
	DialTimeout time.Duration
}

// Start runs the guest spec names on c in its own goroutines and returns a
// channel that receives the guest's end (nil for an orderly one) and is
// then closed. For builtin, the caller should log agent.Warning first. If a
// transport cannot connect, Start ends the console's guest side so the
// relay sees the guest stream end rather than waiting for a ready frame.
func Start(ctx context.Context, spec Spec, c *ring.Console, opts Options) <-chan error {
	done := make(chan error, 1)
	go func() {
		defer close(done)
		done <- run(ctx, spec, c, opts)
	}()
	return done
}

func run(ctx context.Context, spec Spec, c *ring.Console, opts Options) error {
	switch spec.Kind {
	case KindEcho:
		return Echo(ctx, c, opts.Ready)
	case KindBuiltin:
		ao := opts.Agent
		if len(opts.Ready) > 0 {
			ao.Ready = opts.Ready
		}
		return agent.New(ao).ServeConsole(ctx, c)
	case KindUnix, KindVsock:
		dctx := ctx
		if opts.DialTimeout > 0 {
			var cancel context.CancelFunc
			dctx, cancel = context.WithTimeout(ctx, opts.DialTimeout)
			defer cancel()
		}
		var (
			conn net.Conn
			err  error
		)
		if spec.Kind == KindUnix {
			conn, err = DialUnix(dctx, spec.Path)
		} else {
			conn, err = DialVsock(dctx, spec.Path, spec.Port)
		}
		if err != nil {
			c.Tx.CloseWrite()
			c.Rx.CloseRead()
			return err
		}
		return Pump(ctx, conn, c)
	}
	c.Tx.CloseWrite()
	c.Rx.CloseRead()
	return fmt.Errorf("guest: cannot start %v", spec)
}
