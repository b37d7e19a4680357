package relay

import "sync/atomic"

// counters are written by the loop thread only and read by anyone; plain
// atomics keep readers (the debug endpoint, tests) off the loop.
type counters struct {
	framesToGuest, bytesToGuest   atomic.Uint64
	framesToClient, bytesToClient atomic.Uint64

	clientsAccepted, clientsActive, clientsRefused atomic.Uint64
	acceptQueued, acceptTimeouts, acceptOverflows  atomic.Uint64
	disconnects, protocolErrors, evictions         atomic.Uint64

	sessionsOpened, sessionsActive, killsSent, idCollisions atomic.Uint64
	noClientDrops, quarantineDrops, quarantineExpired       atomic.Uint64
	quarantineOverflows                                     atomic.Uint64

	corruptIncidents, corruptBytes atomic.Uint64
	ringFullNanos, guestStallNanos atomic.Uint64
	shutdowns, logDrops            atomic.Uint64
	slots, handshake               atomic.Uint64
	inputStarved, sessionsRefused  atomic.Uint64
	guestEnded                     atomic.Uint32
}

// frameCounts are the per-frame counters, kept in plain fields by the loop
// and added to the atomics once per pass (publish): four atomic adds per
// frame cost the 128-byte fan-in about a tenth of the relay's CPU.
type frameCounts struct {
	framesToGuest, bytesToGuest   uint64
	framesToClient, bytesToClient uint64
}

// publish moves the pass's frame counts into the shared counters.
func (c *counters) publish(p *frameCounts) {
	if p.framesToGuest != 0 {
		c.framesToGuest.Add(p.framesToGuest)
		c.bytesToGuest.Add(p.bytesToGuest)
	}
	if p.framesToClient != 0 {
		c.framesToClient.Add(p.framesToClient)
		c.bytesToClient.Add(p.bytesToClient)
	}
	*p = frameCounts{}
}

// Stats is a snapshot of a relay's counters.
type Stats struct {
	FramesToGuest, BytesToGuest   uint64 // client → guest, forwarded
	FramesToClient, BytesToClient uint64 // guest → client, queued for delivery

	ClientsAccepted uint64 // handshakes sent
	ClientsActive   uint64 // connected now
	ClientsRefused  uint64 // peer credentials not allowed
	AcceptQueued    uint64 // connections that had to wait for a slot
	AcceptTimeouts  uint64 // waiters closed after AcceptWait
	AcceptOverflows uint64 // connections closed because the wait queue was full
	Disconnects     uint64 // clients gone, for any reason
	ProtocolErrors  uint64 // clients disconnected for a malformed or out-of-range frame
	Evictions       uint64 // clients disconnected for holding up the guest stream

	SessionsOpened    uint64 // SESSION_START frames from clients
	SessionsActive    uint64 // open or quarantined now
	KillsSent         uint64 // SIGKILLs sent for a departed client's sessions
	IDCollisions      uint64 // session starts refused: id still quarantined
	NoClientDrops     uint64 // guest frames for a slot with no client
	QuarantineDrops   uint64 // guest frames for a departed client's session
	QuarantineExpired uint64 // quarantined sessions the guest never ended
	// QuarantineOverflows counts session starts refused because the slot's
	// sessions, open plus quarantined, reached MaxSessions.
	QuarantineOverflows uint64

	CorruptIncidents uint64 // times the guest stream had to be resynchronised
	CorruptBytes     uint64 // bytes skipped doing so
	RingFullNanos    uint64 // time the Rx ring was full with frames waiting
	GuestStallNanos  uint64 // time the guest stream waited on a full client
	Shutdowns        uint64 // core.shutdown frames forwarded
	LogDrops         uint64 // log records dropped because the log queue was full

	InputStarved    uint64 // client reads put off because the input budget was spent
	SessionsRefused uint64 // session starts refused: MaxSessionsTotal reached

	Slots     uint64 // client slots of the handshake form (16 or 128; 0 before core.ready)
	Handshake uint64 // the form: 1 for 0.4, 2 for 0.5 (Handshake's value; 0 before core.ready)
}

// Stats returns a snapshot of the counters. Safe from any goroutine.
func (r *Relay) Stats() Stats {
	c := &r.stats
	return Stats{
		FramesToGuest: c.framesToGuest.Load(), BytesToGuest: c.bytesToGuest.Load(),
		FramesToClient: c.framesToClient.Load(), BytesToClient: c.bytesToClient.Load(),
		ClientsAccepted: c.clientsAccepted.Load(), ClientsActive: c.clientsActive.Load(),
		ClientsRefused: c.clientsRefused.Load(), AcceptQueued: c.acceptQueued.Load(),
		AcceptTimeouts: c.acceptTimeouts.Load(), AcceptOverflows: c.acceptOverflows.Load(),
		Disconnects: c.disconnects.Load(), ProtocolErrors: c.protocolErrors.Load(),
		Evictions: c.evictions.Load(), SessionsOpened: c.sessionsOpened.Load(),
		SessionsActive: c.sessionsActive.Load(), KillsSent: c.killsSent.Load(),
		IDCollisions: c.idCollisions.Load(), NoClientDrops: c.noClientDrops.Load(),
		QuarantineDrops: c.quarantineDrops.Load(), QuarantineExpired: c.quarantineExpired.Load(),
		QuarantineOverflows: c.quarantineOverflows.Load(), CorruptIncidents: c.corruptIncidents.Load(),
		CorruptBytes: c.corruptBytes.Load(), RingFullNanos: c.ringFullNanos.Load(),
		GuestStallNanos: c.guestStallNanos.Load(), Shutdowns: c.shutdowns.Load(), LogDrops: c.logDrops.Load(),
		Slots: c.slots.Load(), Handshake: c.handshake.Load(), InputStarved: c.inputStarved.Load(),
		SessionsRefused: c.sessionsRefused.Load(),
	}
}
