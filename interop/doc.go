// Package interop runs upstream microsandbox's published clients against
// the relay binary: the Node SDK's raw AgentClient and the msb CLI from the
// npm registry, whose handshake and framing are upstream's Rust agent
// client, execute commands through a relay serving the builtin guest, once
// per handshake form the relay offers. Against a 0.4 relay both go through
// upstream's legacy fallback (msb warns that the sandbox "was started
// before microsandbox 0.5"); against a 0.5 relay they must not.
//
// The test is skipped unless RELAY_INTEROP=1 (`make interop` sets it), so
// that the race suite does not run it. It installs the npm packages into a
// cache directory keyed by version, RELAY_INTEROP_CACHE or
// $XDG_CACHE_HOME/agentrelay-interop (~/.cache/agentrelay-interop), and
// skips only when npm cannot reach its registry.
package interop
