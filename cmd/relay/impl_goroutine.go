package main

import (
	"agentrelay/bench/baseline"
	"agentrelay/relay"
)

// The goroutine-per-connection baseline, for benchmarks: same command line.
func init() {
	impls["goroutine"] = func(o relay.Options) (server, error) { return baseline.New(o) }
}
