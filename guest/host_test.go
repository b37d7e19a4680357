package guest

import (
	"bytes"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/ring"
)

func newConsole(t *testing.T, capacity int) *ring.Console {
	t.Helper()
	c, err := ring.NewConsole(capacity)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// nextTx reads Tx until one whole guest frame is there and decodes it.
// The exec helpers that play the relay against the agent live in package
// agent's tests; the guest package only needs to see one exec through.
func nextTx(t *testing.T, c *ring.Console, sc *frame.Scanner) frame.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if f, err := sc.Next(); err == nil {
			m, err := frame.Decode(bytes.Clone(f.Raw))
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		n, err := c.Tx.Read(sc.Space(), deadline)
		if err != nil {
			t.Fatalf("reading the guest's frames: %v", err)
		}
		sc.Commit(n)
	}
}
