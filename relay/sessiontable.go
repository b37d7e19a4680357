package relay

import "time"

// session is what the relay knows of one open session: whose it is, whether
// its owner has left (quarantined), and what the exec.log tap needs.
type session struct {
	slot        uint8
	quarantined bool
	exec, tty   bool
	logID       uint64 // relay-wide exec session number for exec.log
	qseq        uint64 // which quarantine this is, to match its expiry entry
}

// qentry is one quarantined session's expiry. All quarantines last the same
// time, so entries expire in the order they were added: a FIFO and one timer
// do instead of a timer per session.
type qentry struct {
	id       uint32
	seq      uint64
	deadline time.Time
}

// sessionTable tracks the sessions clients open in the guest: whose each is
// and, once its client has left, its quarantine until the guest ends it or
// it expires. It is bookkeeping only: it sends nothing and reads no clock.
//
// Each slot holds at most max sessions, open and quarantined together:
// refusing a start beyond that, rather than releasing the oldest
// quarantined sessions, bounds the table at MaxClients × max entries without
// ever letting a departed client's late output reach the slot's next client.
type sessionTable struct {
	m           map[uint32]session
	open        [MaxSlots]int // per slot: sessions its client has open
	quarantined [MaxSlots]int // per slot: sessions of its departed clients
	fifo        []qentry      // quarantine expiries, oldest first (with stale entries)
	seq         uint64
	nextLogID   uint64
	max         int // per slot
	maxTotal    int
}

func newSessionTable(max, maxTotal int) sessionTable {
	// No size hint: a sandbox that runs nothing holds an empty map.
	return sessionTable{m: make(map[uint32]session), max: max, maxTotal: maxTotal}
}

// startResult says what became of a SESSION_START.
type startResult uint8

const (
	started          startResult = iota // forward it
	startQuarantined                    // the id names a departed client's session
	startTooMany                        // the client has max sessions open: a protocol error
	startSlotFull                       // the slot's departed clients hold the rest
	startRelayFull                      // all clients together hold maxTotal
)

// start records a SESSION_START from the client in slot. A start for a
// session the same client already has open restarts it (the guest decides
// what that means), keeping its count.
func (t *sessionTable) start(slot int, id uint32, exec, tty bool) startResult {
	s, ok := t.m[id]
	if ok && s.quarantined {
		return startQuarantined
	}
	if !ok {
		if t.open[slot] >= t.max {
			return startTooMany
		}
		if t.open[slot]+t.quarantined[slot] >= t.max {
			return startSlotFull
		}
		if len(t.m) >= t.maxTotal {
			return startRelayFull
		}
		s = session{slot: uint8(slot)}
		t.open[slot]++
	}
	if exec {
		t.nextLogID++
		s.exec, s.tty, s.logID = true, tty, t.nextLogID
	}
	t.m[id] = s
	return started
}

func (t *sessionTable) get(id uint32) (session, bool) {
	s, ok := t.m[id]
	return s, ok
}

// isQuarantined reports whether id names a departed client's session.
func (t *sessionTable) isQuarantined(id uint32) bool {
	s, ok := t.m[id]
	return ok && s.quarantined
}

// end forgets a session the guest ended.
func (t *sessionTable) end(id uint32) {
	s, ok := t.m[id]
	if !ok {
		return
	}
	delete(t.m, id)
	if s.quarantined {
		t.quarantined[s.slot]--
	} else {
		t.open[s.slot]--
	}
}

// endByClient forgets a session its own client ended (a TERMINAL frame); a
// client cannot end another's session or a quarantined one.
func (t *sessionTable) endByClient(slot int, id uint32) {
	if s, ok := t.m[id]; ok && !s.quarantined && int(s.slot) == slot {
		t.end(id)
	}
}

// quarantine moves every open session of slot's departing client into
// quarantine until deadline, calling kill for each, and returns how many
// there were.
func (t *sessionTable) quarantine(slot int, deadline time.Time, kill func(id uint32)) int {
	if t.open[slot] == 0 {
		return 0
	}
	n := 0
	for id, s := range t.m {
		if int(s.slot) != slot || s.quarantined {
			continue
		}
		t.seq++
		s.quarantined, s.qseq = true, t.seq
		t.m[id] = s
		t.fifo = append(t.fifo, qentry{id: id, seq: s.qseq, deadline: deadline})
		kill(id)
		n++
	}
	t.quarantined[slot] += n
	t.open[slot] = 0
	t.compact()
	return n
}

// current reports whether e is still its session's quarantine.
func (t *sessionTable) current(e qentry) (session, bool) {
	s, ok := t.m[e.id]
	return s, ok && s.quarantined && s.qseq == e.seq
}

// compact drops the expiry entries of sessions that ended before expiring.
// The live entries are bounded (see sessionTable), but without compaction
// stale ones would accumulate for QuarantineTimeout at the rate clients
// leave and the guest ends their sessions. Compacting only once more than
// max entries are stale keeps the FIFO under (MaxClients + 2) × max entries
// and the work amortised to at most MaxClients + 2 entries visited per entry
// added.
func (t *sessionTable) compact() {
	live := 0
	for _, q := range t.quarantined {
		live += q
	}
	if len(t.fifo) <= live+t.max {
		return
	}
	keep := t.fifo[:0]
	for _, e := range t.fifo {
		if _, ok := t.current(e); ok {
			keep = append(keep, e)
		}
	}
	clear(t.fifo[len(keep):])
	t.fifo = keep
}

// expire ends every quarantine due by now, calling expired for each, and
// returns the next deadline (zero if none is left).
func (t *sessionTable) expire(now time.Time, expired func(id uint32, s session)) time.Time {
	i := 0
	for ; i < len(t.fifo) && !t.fifo[i].deadline.After(now); i++ {
		e := t.fifo[i]
		if s, ok := t.current(e); ok {
			expired(e.id, s)
			t.end(e.id)
		}
	}
	t.fifo = append(t.fifo[:0], t.fifo[i:]...)
	if len(t.fifo) == 0 {
		return time.Time{}
	}
	return t.fifo[0].deadline
}

// len is how many sessions are open or quarantined.
func (t *sessionTable) len() int { return len(t.m) }
