package relay_test

import (
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/relaytest"
)

// TestPeerNotAllowed: a peer whose uid is not on the allow-list is closed
// before the handshake and counted; an allowed one is served.
func TestPeerNotAllowed(t *testing.T) {
	e := relaytest.Start(t, Reactor, relaytest.Config{Options: func(o *relay.Options) {
		o.AllowUIDs = []uint32{54321} // not us
	}})
	if c, err := e.DialErr(2 * time.Second); err == nil {
		c.Conn.Close()
		t.Fatal("a peer with a uid not on the allow-list got a handshake")
	}
	r := e.Server.(*relay.Relay)
	if s := r.Stats(); s.ClientsRefused != 1 || s.ClientsAccepted != 0 {
		t.Fatalf("ClientsRefused=%d ClientsAccepted=%d, want 1 and 0", s.ClientsRefused, s.ClientsAccepted)
	}
	ok := relaytest.Start(t, Reactor, relaytest.Config{}) // default: own uid and root
	ok.Dial(t)
}
