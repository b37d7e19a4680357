package relay_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/relay"
)

// A reference model of the relay for FuzzRelay: what PROTOCOL.md and the
// relay's documented improvements say must happen to every byte, written
// from the spec rather than from the relay's code, and small enough to be
// obviously right. It is fed the operations in the order the fuzz driver
// issues them and predicts
//
//   - for every client connection, the exact sequence of frames it receives
//     after the handshake (guest frames routed to it, and the relay's
//     refusals of colliding session starts);
//   - for the guest, per slot, the exact sequence of frames: the frames of
//     the slot's successive connections in the order each sent them, each
//     connection's SIGKILLs (in any order among themselves) right after its
//     last frame; slots interleave freely;
//   - the relay's counters.
//
// Rules modelled: slots (lowest free, slots holding quarantined sessions
// last; a connection beyond the 16th waits, in order, for a freed slot), id-range checks (own range, or 0 with SHUTDOWN), frame length
// checks, sessions opened by SESSION_START and closed by TERMINAL from
// either side, the per-client session limit, SIGKILL and quarantine of a
// departing client's open sessions, refusal of a session start under a
// quarantined id or in a slot whose quarantine is full (open and quarantined
// sessions at MaxSessions), routing by min(id/STEP, 15), drops for empty slots and
// quarantined sessions, guest resynchronisation after corrupt framing.
//
// The model applies every operation at once. While the guest is paused the
// real relay may hold a client's frames back for a while; the driver marks
// what a connection has pending (pClose, pRefusal, pSess) and does not issue
// an operation whose outcome would depend on whether those frames have been
// processed yet (see fuzzHarness.unsafe).

const nSlots = frame.MaxClients

// slotOfID is the 0.4.4 routing rule for guest frames.
func slotOfID(id uint32) int { return min(int(id/frame.Step), nSlots-1) }

// ownID is the id-range rule for client frames: inside the client's range
// (k·STEP, (k+1)·STEP), or 0 for core.shutdown (SHUTDOWN flag).
func ownID(slot int, id uint32, flags uint8) bool {
	if id == 0 {
		return flags&frame.FlagShutdown != 0
	}
	lo := uint32(slot) * frame.Step
	return id > lo && id < lo+frame.Step
}

// killFrame is core.exec.signal {signal: 9} under id.
func killFrame(id uint32) []byte {
	raw, err := frame.AppendMessage(nil, id, frame.TypeExecSignal, frame.ExecSignal{Signal: 9})
	if err != nil {
		panic(err)
	}
	return raw
}

type mSession struct {
	owner       *mConn
	quarantined bool
}

// mConn is one client connection as the model sees it.
type mConn struct {
	n, slot int
	live    bool   // the relay holds it
	closed  string // why it ended: "client" or the relay's reason
	exp     []cWant
	// minRecv is how many of exp must have arrived when the connection
	// ended: frames queued to a client may be lost when the relay closes it
	// or when the client stops reading and hangs up.
	minRecv int
	open    int      // its open sessions
	partial []byte   // start of an incomplete frame
	byRelay bool     // the relay closed it
	sent    [][]byte // frames it sent that the guest must get (for messages)

	// Effects issued while the guest was paused and perhaps not yet
	// processed by the relay.
	pClose, pRefusal, pSess bool
}

// cWant is one frame a client must receive: exact bytes, or the relay's
// refusal of a session start under id (core.exec.failed, or core.fs.response
// for an fs request), which is matched by structure.
type cWant struct {
	raw     []byte
	refusal bool
	id      uint32
	fs      bool
}

// gWant is one step of a slot's guest stream: a frame, or a connection's
// SIGKILLs in any order.
type gWant struct {
	raws  [][]byte
	kills bool
	conn  int
}

type model struct {
	maxSessions int
	slots       [nSlots]*mConn
	quarantined [nSlots]int // quarantined sessions per slot
	sessions    map[uint32]*mSession
	conns       []*mConn
	st          relay.Stats
	guest       [nSlots][]gWant
	id0         map[string]int // id-0 frames (shutdowns) → sender slot
	paused      bool           // mark effects pending
	waiters     []*mConn       // in the accept queue, oldest first
	attached    []*mConn       // waiters given a slot, for the driver
}

func newModel(maxSessions int) *model {
	return &model{maxSessions: maxSessions, sessions: map[uint32]*mSession{}, id0: map[string]int{}}
}

// clone deep-copies the model, for a dry run of an operation.
func (m *model) clone() *model {
	c := *m
	c.sessions = make(map[uint32]*mSession, len(m.sessions))
	c.id0 = map[string]int{}
	c.conns = make([]*mConn, len(m.conns))
	remap := map[*mConn]*mConn{}
	for i, mc := range m.conns {
		cc := *mc
		cc.exp = slices.Clip(mc.exp)
		cc.sent = slices.Clip(mc.sent)
		c.conns[i] = &cc
		remap[mc] = &cc
	}
	for i, s := range m.slots {
		c.slots[i] = remap[s]
	}
	c.waiters, c.attached = nil, nil
	for _, w := range m.waiters {
		c.waiters = append(c.waiters, remap[w])
	}
	for id, s := range m.sessions {
		c.sessions[id] = &mSession{owner: remap[s.owner], quarantined: s.quarantined}
	}
	for i := range m.guest {
		c.guest[i] = slices.Clip(m.guest[i])
	}
	return &c
}

// freeSlot is the slot a new client gets: the lowest free one, but slots
// still holding a departed client's quarantined sessions only when no other
// is free (so a new client's ids do not collide with them); -1 if all 16
// are taken.
func (m *model) freeSlot() int {
	fallback := -1
	for s := range nSlots {
		if m.slots[s] != nil {
			continue
		}
		if m.quarantined[s] == 0 {
			return s
		}
		if fallback < 0 {
			fallback = s
		}
	}
	return fallback
}

func (m *model) live() []*mConn {
	var l []*mConn
	for _, c := range m.slots {
		if c != nil {
			l = append(l, c)
		}
	}
	return l
}

// connect is a new connection: it gets the slot freeSlot names, or, when all
// 16 are taken, waits in the accept queue (in order) for one to free up.
// With wait false, or maxWaiters waiting already, it returns nil instead.
func (m *model) connect(wait bool) *mConn {
	c := &mConn{n: len(m.conns), slot: -1}
	if s := m.freeSlot(); s >= 0 {
		m.conns = append(m.conns, c)
		m.attach(c, s)
		return c
	}
	if !wait || len(m.waiters) >= maxWaiters {
		return nil
	}
	m.conns = append(m.conns, c)
	m.waiters = append(m.waiters, c)
	m.st.AcceptQueued++
	return c
}

// maxWaiters bounds the accept queue the fuzz builds (the relay's default
// AcceptQueue, 64, is never reached).
const maxWaiters = 3

func (m *model) attach(c *mConn, slot int) {
	c.slot, c.live = slot, true
	m.slots[slot] = c
	m.st.ClientsAccepted++
	m.st.ClientsActive++
}

// serveWaiters gives free slots to waiting connections, oldest first.
func (m *model) serveWaiters() {
	for len(m.waiters) > 0 {
		s := m.freeSlot()
		if s < 0 {
			return
		}
		c := m.waiters[0]
		m.waiters = m.waiters[1:]
		m.attach(c, s)
		m.attached = append(m.attached, c)
	}
}

// write feeds bytes a client wrote. Complete frames are checked and
// forwarded in order; the first bad one closes the connection and nothing
// after it counts.
func (m *model) write(c *mConn, b []byte) {
	if !c.live {
		panic("model: write on a closed connection")
	}
	buf := append(slices.Clip(c.partial), b...)
	for c.live {
		if len(buf) < frame.LenSize {
			break
		}
		l := binary.BigEndian.Uint32(buf)
		if l < frame.MinLen {
			m.protocolError(c, fmt.Sprintf("length %d too short", l))
			return
		}
		if l > frame.MaxLen {
			m.protocolError(c, fmt.Sprintf("length %d too large", l))
			return
		}
		n := frame.LenSize + int(l)
		if len(buf) < n {
			break
		}
		m.clientFrame(c, buf[:n:n])
		buf = buf[n:]
	}
	c.partial = slices.Clone(buf)
}

func (m *model) clientFrame(c *mConn, raw []byte) {
	id := binary.BigEndian.Uint32(raw[frame.LenSize:])
	flags := raw[frame.LenSize+4]
	if !ownID(c.slot, id, flags) {
		m.protocolError(c, fmt.Sprintf("frame id %d flags %#x outside slot %d's range", id, flags, c.slot))
		return
	}
	if s := m.sessions[id]; flags&frame.FlagSessionStart == 0 && s != nil && s.quarantined {
		m.protocolError(c, fmt.Sprintf("frame id %d addresses a departed client's session", id))
		return
	}
	if flags&(frame.FlagSessionStart|frame.FlagTerminal) != 0 && m.paused {
		c.pSess = true
	}
	if flags&frame.FlagSessionStart != 0 {
		s := m.sessions[id]
		switch {
		case s != nil && s.quarantined:
			// The guest may still send for the departed client's session
			// under this id: refuse, answering for the guest.
			m.st.IDCollisions++
			m.refuse(c, id, raw)
			return
		case s == nil:
			if c.open >= m.maxSessions {
				m.protocolError(c, "too many sessions")
				return
			}
			if c.open+m.quarantined[c.slot] >= m.maxSessions {
				// The slot's departed clients left that many sessions the
				// guest has not ended: the quarantine is bounded by
				// refusing, never by letting their output through.
				m.st.QuarantineOverflows++
				m.refuse(c, id, raw)
				return
			}
			m.sessions[id] = &mSession{owner: c}
			c.open++
			m.st.SessionsActive++
		}
		m.st.SessionsOpened++
	}
	if flags&frame.FlagTerminal != 0 {
		if s := m.sessions[id]; s != nil && !s.quarantined && s.owner == c {
			m.endSession(id, s)
		}
	}
	m.st.FramesToGuest++
	m.st.BytesToGuest += uint64(len(raw))
	if flags&frame.FlagShutdown != 0 {
		m.st.Shutdowns++
	}
	if id == 0 {
		m.id0[string(raw)] = c.slot
	}
	raw = bytes.Clone(raw)
	c.sent = append(c.sent, raw)
	m.guest[c.slot] = append(m.guest[c.slot], gWant{raws: [][]byte{raw}, conn: c.n})
}

// refuse answers a session start on the guest's behalf with a terminal
// failure: core.fs.response for an fs request, core.exec.failed otherwise.
func (m *model) refuse(c *mConn, id uint32, raw []byte) {
	msg, _ := frame.Decode(raw)
	c.exp = append(c.exp, cWant{refusal: true, id: id, fs: msg.Type == frame.TypeFsRequest})
	if m.paused {
		c.pRefusal = true
	}
}

func (m *model) endSession(id uint32, s *mSession) {
	delete(m.sessions, id)
	m.st.SessionsActive--
	if s.quarantined {
		m.quarantined[s.owner.slot]--
	} else {
		s.owner.open--
	}
}

func (m *model) protocolError(c *mConn, why string) {
	m.st.ProtocolErrors++
	c.byRelay = true
	m.disconnect(c, why)
}

// disconnect ends a connection (either side): its open sessions get one
// SIGKILL each and are quarantined, its slot is free.
func (m *model) disconnect(c *mConn, why string) {
	c.live, c.closed, c.partial = false, why, nil
	m.slots[c.slot] = nil
	m.st.Disconnects++
	m.st.ClientsActive--
	if m.paused {
		c.pClose = true
	}
	m.release(c)
	m.serveWaiters()
}

func (m *model) release(c *mConn) {
	var ids []uint32
	for id, s := range m.sessions {
		if s.owner == c && !s.quarantined {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return
	}
	slices.Sort(ids)
	k := gWant{kills: true, conn: c.n}
	for _, id := range ids {
		m.sessions[id].quarantined = true
		m.quarantined[c.slot]++
		raw := killFrame(id)
		k.raws = append(k.raws, raw)
		m.st.KillsSent++
		m.st.FramesToGuest++
		m.st.BytesToGuest += uint64(len(raw))
	}
	c.open = 0
	m.guest[c.slot] = append(m.guest[c.slot], k)
}

// route is where a guest frame goes: "quarantine", "noclient" or
// "client" (to the returned connection).
func (m *model) route(id uint32) (string, *mConn) {
	if s := m.sessions[id]; s != nil && s.quarantined {
		return "quarantine", nil
	}
	c := m.slots[slotOfID(id)]
	if c == nil {
		return "noclient", nil
	}
	return "client", c
}

// guestFrame feeds one frame the guest sent.
func (m *model) guestFrame(raw []byte) {
	id := binary.BigEndian.Uint32(raw[frame.LenSize:])
	terminal := raw[frame.LenSize+4]&frame.FlagTerminal != 0
	s := m.sessions[id]
	where, c := m.route(id)
	switch where {
	case "quarantine":
		m.st.QuarantineDrops++
		if terminal {
			m.endSession(id, s) // the guest ended it: quarantine over
		}
	case "noclient":
		m.st.NoClientDrops++
	case "client":
		m.st.FramesToClient++
		m.st.BytesToClient += uint64(len(raw))
		c.exp = append(c.exp, cWant{raw: bytes.Clone(raw)})
		if s != nil && terminal {
			m.endSession(id, s)
		}
	}
}

// corrupt feeds n bytes of garbage the guest sent before a good frame.
func (m *model) corrupt(n int) {
	m.st.CorruptIncidents++
	m.st.CorruptBytes += uint64(n)
}

func (m *model) guestTotal() int {
	n := 0
	for _, ws := range m.guest {
		for _, w := range ws {
			n += len(w.raws)
		}
	}
	return n
}

// settled clears the pending marks once the relay has caught up.
func (m *model) settled() {
	for _, c := range m.conns {
		c.pClose, c.pRefusal, c.pSess = false, false, false
	}
}

// statsChecked are the counters the model predicts; statsPartial those
// that are certain while the guest is paused (guest → client).
var (
	statsChecked = []string{"FramesToGuest", "BytesToGuest", "FramesToClient", "BytesToClient",
		"ClientsAccepted", "ClientsActive", "ClientsRefused", "AcceptQueued", "AcceptTimeouts", "AcceptOverflows",
		"Disconnects", "ProtocolErrors", "Evictions", "SessionsOpened", "SessionsActive", "KillsSent",
		"IDCollisions", "NoClientDrops", "QuarantineDrops", "QuarantineExpired", "QuarantineOverflows",
		"CorruptIncidents", "CorruptBytes", "Shutdowns"}
	statsPartial = map[string]bool{"FramesToClient": true, "BytesToClient": true, "NoClientDrops": true,
		"QuarantineDrops": true, "CorruptIncidents": true, "CorruptBytes": true, "ClientsAccepted": true}
)

// statsDiff describes how got differs from want, "" if it does not.
func statsDiff(got, want relay.Stats, full bool) string {
	var b strings.Builder
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	for _, name := range statsChecked {
		if !full && !statsPartial[name] {
			continue
		}
		if a, e := g.FieldByName(name).Uint(), w.FieldByName(name).Uint(); a != e {
			fmt.Fprintf(&b, " %s=%d (want %d)", name, a, e)
		}
	}
	return b.String()
}

// describe names a frame for messages.
func describe(raw []byte) string {
	if len(raw) < frame.HeaderSize {
		return fmt.Sprintf("%x", raw)
	}
	id := binary.BigEndian.Uint32(raw[frame.LenSize:])
	t := "?"
	if msg, err := frame.Decode(raw); err == nil {
		t = msg.TypeName
	}
	return fmt.Sprintf("[id %d (slot %d) flags %#x %s, %d bytes]", id, slotOfID(id), raw[frame.LenSize+4], t, len(raw))
}

// checkGuest compares what the guest received with the model.
func (m *model) checkGuest(got [][]byte) error {
	var per [nSlots][][]byte
	for _, raw := range got {
		id := binary.BigEndian.Uint32(raw[frame.LenSize:])
		s := slotOfID(id)
		if id == 0 {
			var ok bool
			if s, ok = m.id0[string(raw)]; !ok {
				return fmt.Errorf("guest got a frame under id 0 no client sent: %s", describe(raw))
			}
		}
		per[s] = append(per[s], raw)
	}
	for s := range nSlots {
		if err := matchGuest(per[s], m.guest[s]); err != nil {
			return fmt.Errorf("guest stream of slot %d: %w", s, err)
		}
	}
	return nil
}

func matchGuest(got [][]byte, want []gWant) error {
	i := 0
	for wi, w := range want {
		n := len(w.raws)
		if i+n > len(got) {
			return fmt.Errorf("step %d of %d (conn %d, kills %v) missing: got only %d frames; next wanted %s", wi, len(want), w.conn, w.kills, len(got), describe(w.raws[0]))
		}
		if !w.kills {
			if !bytes.Equal(got[i], w.raws[0]) {
				return fmt.Errorf("frame %d: got %s, want %s (conn %d)", i, describe(got[i]), describe(w.raws[0]), w.conn)
			}
			i++
			continue
		}
		g := slices.Clone(got[i : i+n])
		e := slices.Clone(w.raws)
		slices.SortFunc(g, bytes.Compare)
		slices.SortFunc(e, bytes.Compare)
		for k := range g {
			if !bytes.Equal(g[k], e[k]) {
				return fmt.Errorf("frames %d..%d: want conn %d's %d SIGKILLs, got %s", i, i+n-1, w.conn, n, describe(g[k]))
			}
		}
		i += n
	}
	if i < len(got) {
		return fmt.Errorf("%d extra frames, first %s", len(got)-i, describe(got[i]))
	}
	return nil
}

// checkClient compares what a connection received after its handshake.
func (m *model) checkClient(c *mConn, got [][]byte) error {
	if len(got) > len(c.exp) {
		return fmt.Errorf("conn %d (slot %d): %d frames, want at most %d; extra %s", c.n, c.slot, len(got), len(c.exp), describe(got[len(c.exp)]))
	}
	for i, g := range got {
		w := c.exp[i]
		if !w.refusal {
			if !bytes.Equal(g, w.raw) {
				return fmt.Errorf("conn %d (slot %d) frame %d: got %s, want %s", c.n, c.slot, i, describe(g), describe(w.raw))
			}
			continue
		}
		msg, err := frame.Decode(g)
		want := frame.TypeExecFailed
		if w.fs {
			want = frame.TypeFsResponse
		}
		if err != nil || msg.ID != w.id || msg.Flags != frame.FlagTerminal || msg.Type != want {
			return fmt.Errorf("conn %d (slot %d) frame %d: got %s, want the relay's %s refusing id %d", c.n, c.slot, i, describe(g), want, w.id)
		}
	}
	if len(got) < c.minRecv {
		return fmt.Errorf("conn %d (slot %d): %d frames, want %d; missing %s", c.n, c.slot, len(got), c.minRecv, describeWant(c.exp[len(got)]))
	}
	return nil
}

func describeWant(w cWant) string {
	if w.refusal {
		return fmt.Sprintf("[refusal of id %d]", w.id)
	}
	return describe(w.raw)
}
