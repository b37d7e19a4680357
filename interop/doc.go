// Package interop runs upstream microsandbox's published clients against
// the relay binary: the Node SDK's raw AgentClient from the npm registry,
// whose handshake and framing are upstream's Rust agent client, executes
// commands through a relay serving the builtin guest, once per handshake
// form the relay offers.
//
// The test is skipped unless RELAY_INTEROP=1 (`make interop` sets it), so
// that the race suite does not run it. It installs the npm packages into a
// cache directory keyed by version, RELAY_INTEROP_CACHE or
// $XDG_CACHE_HOME/agentrelay-interop (~/.cache/agentrelay-interop), and
// skips only when npm cannot reach its registry.
package interop
