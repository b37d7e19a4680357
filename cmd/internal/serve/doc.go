// Package serve is the `serve` subcommand shared by bin/relay and
// bin/relay-baseline: flags, the guest's start-up, the debug endpoint and the
// signal-driven lifecycle around a relay implementation.
package serve
