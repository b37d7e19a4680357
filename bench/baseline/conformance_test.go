package baseline

import (
	"testing"

	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/relaytest"
)

// Goroutine is the baseline as the conformance suite sees it.
var Goroutine = relaytest.Impl{
	Name:     "goroutine",
	Improved: false,
	New: func(o relay.Options) (relaytest.Server, error) {
		return New(o)
	},
}

func TestConformance(t *testing.T) { relaytest.Run(t, Goroutine) }
