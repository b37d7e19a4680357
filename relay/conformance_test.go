package relay_test

import (
	"testing"

	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/relaytest"
)

// Reactor is the reactor relay as the conformance suite sees it.
var Reactor = relaytest.Impl{
	Name:     "reactor",
	Improved: true,
	Ports:    []relaytest.Port{relaytest.PortRing, relaytest.PortFD},
	Forms:    []relay.Handshake{relay.Handshake04, relay.Handshake05},
	New: func(o relay.Options) (relaytest.Server, error) {
		return relay.New(o)
	},
}

func TestConformance(t *testing.T) { relaytest.Run(t, Reactor) }

type relayStats = relay.Stats
