package baseline

import (
	"sync/atomic"

	"github.com/agentrelay/agentrelay/relay"
)

// counters are written by the relay's goroutines and read by anyone.
type counters struct {
	framesToGuest, bytesToGuest         atomic.Uint64
	droppedToGuest, droppedBytesToGuest atomic.Uint64
	framesToClient, bytesToClient       atomic.Uint64
	clientsAccepted, clientsActive      atomic.Uint64
	acceptOverflows, disconnects        atomic.Uint64
	sessionsOpened, sessionsActive      atomic.Uint64
	killsSent, noClientDrops, shutdowns atomic.Uint64
	corruptIncidents, corruptBytes      atomic.Uint64
	ringFullNanos, guestStallNanos      atomic.Uint64
}

// Stats returns a snapshot of the counters in the reactor's terms; fields
// for mechanisms the baseline does not have stay zero. Frames dropped on the
// way to the guest have no field there: see DroppedToGuest. A 17th client,
// closed at once, counts as an AcceptOverflow. Safe from any goroutine.
func (r *Relay) Stats() relay.Stats {
	c := &r.stats
	return relay.Stats{
		FramesToGuest: c.framesToGuest.Load(), BytesToGuest: c.bytesToGuest.Load(),
		FramesToClient: c.framesToClient.Load(), BytesToClient: c.bytesToClient.Load(),
		ClientsAccepted: c.clientsAccepted.Load(), ClientsActive: c.clientsActive.Load(),
		AcceptOverflows: c.acceptOverflows.Load(), Disconnects: c.disconnects.Load(),
		SessionsOpened: c.sessionsOpened.Load(), SessionsActive: c.sessionsActive.Load(),
		KillsSent: c.killsSent.Load(), NoClientDrops: c.noClientDrops.Load(),
		CorruptIncidents: c.corruptIncidents.Load(), CorruptBytes: c.corruptBytes.Load(),
		RingFullNanos: c.ringFullNanos.Load(), GuestStallNanos: c.guestStallNanos.Load(),
		Shutdowns: c.shutdowns.Load(),
	}
}

// DroppedToGuest returns the client frames (and their bytes) dropped because
// the Rx ring stayed full through every retry, the original's data loss that
// the reactor does not have.
func (r *Relay) DroppedToGuest() (frames, bytes uint64) {
	return r.stats.droppedToGuest.Load(), r.stats.droppedBytesToGuest.Load()
}
