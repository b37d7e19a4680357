// Package relaytest is the conformance suite every relay implementation of
// this module must pass: the reactor relay (package relay) and the
// goroutine-per-connection baseline (package bench/baseline).
//
// The suite starts the real implementation on a real Unix socket and, once
// per guest port the implementation serves, a real ring.Console (PortRing)
// or a real connected socket (PortFD); it plays the guest on that port and
// the clients on real sockets, and checks bytes, not just messages. Behaviour that only the
// reactor has — its improvements over microsandbox 0.4.4 — is grouped under
// Improvements and skipped, by name and with the reason, for implementations
// that declare they do not have it.
package relaytest
