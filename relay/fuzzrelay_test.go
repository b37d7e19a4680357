package relay_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/relaytest"
	"github.com/agentrelay/agentrelay/ring"
)

// FuzzRelay is a stateful fuzz of the relay against the reference model in
// model_test.go. The input is one configuration byte (ring size, MaxSessions)
// and then 4-byte operations (at most fuzzMaxOps): clients connect (a 17th
// to 19th wait in the accept queue), send frames (valid, colliding,
// foreign, malformed; batched, split across writes, some larger than the
// ring), hang up (cleanly, right after a frame, or mid-frame), stop and
// resume reading; the guest sends frames (routed, for empty slots, for
// quarantined sessions, terminal, any flags), corrupt bytes, pauses and
// resumes reading. They run against a real relay with real Unix-socket
// clients and the harness guest, with a 4 or 16 KiB ring so that it fills.
// The operations are logged on failure (and always with -fuzzrelay.trace).
//
// After each operation the driver waits until the relay's counters reach
// what the model predicts (every operation moves at least one), so the
// model never runs ahead of the relay except while the guest is paused, when
// a client's frames may be held back: then only operations whose outcome
// does not depend on those frames are issued as they are, others first
// resume the guest and let the relay catch up (settle). At the end every
// client's frames and the guest's, per slot, are compared with the model's
// exactly: nothing missing, nothing extra, nothing reordered.
//
// Not modelled (covered by the conformance suite): eviction of slow clients
// and the guest stream's stall on a full client buffer (EvictGrace is a
// minute and a stopped reader is sent at most about 1 MiB, below
// ClientBuffer), quarantine expiry (an hour) and accept-queue expiry and
// overflow (at most 3 wait, for a minute), exec.log, drain on Stop, peer
// credentials.
func FuzzRelay(f *testing.F) {
	for _, s := range fuzzRelaySeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) { runRelayFuzz(t, data) })
}

var fuzzRelayTrace = flag.Bool("fuzzrelay.trace", false, "log FuzzRelay's operations for every input")

const (
	fuzzMaxOps      = 64
	fuzzLargeBudget = 1 << 20 // bytes of "large" frames per input
)

// fuzzWait bounds every wait for the relay. A fuzzing worker kills an input
// that runs 10 s ("deadlocked!"), losing the report, so it waits less.
var fuzzWait = func() time.Duration {
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		return 3 * time.Second
	}
	return 10 * time.Second
}()

// Operation kinds: the first byte of an operation, modulo 16.
const (
	opConnect = 0  // (1 too)
	opSend    = 2  // a: client, b: kind|count<<3|split<<5|idsel<<6, c: size (3, 4 too)
	opBad     = 5  // a: client, b: bad kind%6 | prefix frames<<3 (%3), c: detail
	opClose   = 6  // a: client, b: bit0 a last frame (kind b>>1&7) first
	opCut     = 7  // a: client, b: kind&7 | bit3 a whole frame first, c: where the frame is cut
	opGuest   = 8  // a: target, b: type&7 | count<<3 | split<<5, c: size (9, 10 too)
	opCorrupt = 11 // a: target, c: garbage length
	opPause   = 12
	opResume  = 13 // resume the guest and settle
	opSlow    = 14 // a: client whose reading is toggled
	opFill    = 15 // a: connect until 1+a%16 clients are live
)

// fcl is a real client connection.
type fcl struct {
	m    *mConn
	conn *net.UnixConn
	br   *bufio.Reader

	wq       chan wop
	wpending atomic.Int32
	wdone    chan struct{}
	werr     atomic.Pointer[error]

	slow, stop atomic.Bool
	mu         sync.Mutex
	got        [][]byte
	rerr       error
	rdone      chan struct{}
	closedByUs bool
	wqClosed   bool

	hs     chan error // handshake of a connection that waited for a slot
	offset uint32
	ready  []byte
}

type wop struct {
	b       []byte
	sleep   time.Duration
	close   bool
	mayFail bool
}

func (c *fcl) writer() {
	defer close(c.wdone)
	for op := range c.wq {
		switch {
		case op.close:
			c.stop.Store(true)
			c.conn.Close()
		case op.sleep > 0:
			time.Sleep(op.sleep)
		default:
			if _, err := c.conn.Write(op.b); err != nil && !op.mayFail {
				c.werr.CompareAndSwap(nil, &err)
			}
		}
		c.wpending.Add(-1)
	}
}

func (c *fcl) reader() {
	defer close(c.rdone)
	if c.hs != nil { // waiting in the accept queue
		err := c.handshake()
		c.hs <- err
		if err != nil {
			c.mu.Lock()
			c.rerr = err
			c.mu.Unlock()
			return
		}
	}
	for {
		for c.slow.Load() && !c.stop.Load() {
			time.Sleep(time.Millisecond)
		}
		f, err := readFrame(c.br)
		c.mu.Lock()
		if err != nil {
			c.rerr = err
			c.mu.Unlock()
			return
		}
		c.got = append(c.got, f)
		c.mu.Unlock()
	}
}

func (c *fcl) received() (int, error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.rdone:
		return len(c.got), c.rerr, true
	default:
		return len(c.got), nil, false
	}
}

func (c *fcl) queue(ops ...wop) {
	c.wpending.Add(int32(len(ops)))
	for _, op := range ops {
		c.wq <- op
	}
}

func readFrame(br *bufio.Reader) ([]byte, error) {
	var hdr [frame.LenSize]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < frame.MinLen || n > frame.MaxLen {
		return nil, fmt.Errorf("relay sent a frame of length %d", n)
	}
	b := make([]byte, frame.LenSize+int(n))
	copy(b, hdr[:])
	if _, err := io.ReadFull(br, b[frame.LenSize:]); err != nil {
		return nil, err
	}
	return b, nil
}

// fuzzHarness drives one input.
type fuzzHarness struct {
	t      *testing.T
	e      *relaytest.Env
	r      *relay.Relay
	m      *model
	cl     []*fcl // by model connection number
	paused bool
	large  int // large-frame bytes left
	nonce  uint32
	nextID [nSlots]uint32 // fresh id index per slot
	// batchStart is the session started by the write being built, 0 if none.
	batchStart uint32
	op         int
	log        strings.Builder
}

// runRelayFuzz runs the operations on each guest port in turn.
func runRelayFuzz(t *testing.T, data []byte) {
	if len(data) == 0 {
		return
	}
	for _, port := range ports {
		if t.Failed() {
			return
		}
		runRelayFuzzPort(t, port, data)
	}
}

func runRelayFuzzPort(t *testing.T, port relaytest.Port, data []byte) {
	cfg, ops := data[0], data[1:]
	ringSize := 4096
	if cfg&1 != 0 {
		ringSize = 16384
	}
	maxSessions := 2 + int(cfg>>1)%7
	// The harness never closes its console (8 fds of wake pipes per Start,
	// which thousands of fuzz inputs exhaust): close it last, once the
	// relay and the guest are done with it.
	var console *ring.Console
	t.Cleanup(func() {
		if console != nil {
			console.Close()
		}
	})
	impl := Reactor
	impl.Port = port
	e := relaytest.Start(t, impl, relaytest.Config{Ring: ringSize, Options: func(o *relay.Options) {
		o.EvictGrace = time.Minute
		o.QuarantineTimeout = time.Hour
		o.MaxSessions = maxSessions
		o.DrainTimeout = 200 * time.Millisecond
		o.Logger = slog.New(slog.DiscardHandler)
	}})
	console = e.Guest.Console
	h := &fuzzHarness{t: t, e: e, r: e.Server.(*relay.Relay), m: newModel(maxSessions), large: fuzzLargeBudget}
	fmt.Fprintf(&h.log, "port %s, ring %d, MaxSessions %d\n", port, ringSize, maxSessions)
	t.Cleanup(h.cleanup)
	for i := 0; i+4 <= len(ops) && h.op < fuzzMaxOps; i += 4 {
		h.op++
		h.step(ops[i], ops[i+1], ops[i+2], ops[i+3])
	}
	h.finish()
}

func (h *fuzzHarness) logf(format string, args ...any) {
	n := h.log.Len()
	fmt.Fprintf(&h.log, "%2d: ", h.op)
	fmt.Fprintf(&h.log, format, args...)
	h.log.WriteByte('\n')
	if *fuzzRelayTrace {
		os.Stderr.WriteString(h.log.String()[n:]) // as it happens: a relay panic ends the process
	}
}

func (h *fuzzHarness) fatalf(format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf("op %d: %s", h.op, fmt.Sprintf(format, args...))
}

func (h *fuzzHarness) cleanup() {
	if h.t.Failed() || *fuzzRelayTrace {
		h.t.Logf("operations:\n%s", h.log.String())
		h.t.Logf("relay counters: %+v", h.r.Stats())
	}
	h.e.Guest.Resume()
	for _, c := range h.cl {
		c.stop.Store(true)
		c.conn.Close()
		if !c.wqClosed {
			close(c.wq)
		}
	}
	for _, c := range h.cl {
		<-c.wdone
		<-c.rdone
	}
}

// sync waits until the relay's counters are the model's: the relay has
// processed every operation so far (all of them, or while the guest is
// paused those towards clients).
func (h *fuzzHarness) sync() {
	h.t.Helper()
	full := !h.paused
	deadline := time.Now().Add(fuzzWait)
	for i := 0; ; i++ {
		d := statsDiff(h.r.Stats(), h.m.st, full)
		if d == "" {
			return
		}
		if time.Now().After(deadline) {
			h.fatalf("relay counters differ from the model's:%s", d)
		}
		if i < 100 {
			runtime.Gosched()
		} else {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// settle resumes the guest and waits until the relay has processed
// everything.
func (h *fuzzHarness) settle() {
	h.t.Helper()
	if h.paused {
		h.e.Guest.Resume()
		h.paused, h.m.paused = false, false
	}
	h.sync()
	h.m.settled()
}

// waitReceived waits until a reading client has every frame the model
// routed to it so far.
func (h *fuzzHarness) waitReceived(c *fcl) {
	h.t.Helper()
	if c.slow.Load() {
		return
	}
	if c.m.pRefusal {
		h.settle()
	}
	want := len(c.m.exp)
	deadline := time.Now().Add(fuzzWait)
	for {
		n, err, done := c.received()
		if n >= want {
			return
		}
		if done {
			h.fatalf("conn %d (slot %d) ended after %d of %d frames: %v", c.m.n, c.m.slot, n, want, err)
		}
		if time.Now().After(deadline) {
			h.fatalf("conn %d (slot %d): %d of %d frames after %v", c.m.n, c.m.slot, n, want, fuzzWait)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

func (h *fuzzHarness) pick(a byte) *fcl {
	live := h.m.live()
	if len(live) == 0 {
		return nil
	}
	return h.cl[live[int(a)%len(live)].n]
}

func (h *fuzzHarness) step(k, a, b, c byte) {
	defer h.attachWaiters()
	switch k % 16 {
	case 0, 1:
		h.connect(true)
	case 2, 3, 4:
		if cl := h.pickOrConnect(a); cl != nil {
			h.send(cl, b, c)
		}
	case opBad:
		if cl := h.pickOrConnect(a); cl != nil {
			h.bad(cl, b, c)
		}
	case opClose:
		if cl := h.pickOrConnect(a); cl != nil {
			h.hangUp(cl, b, c)
		}
	case opCut:
		if cl := h.pickOrConnect(a); cl != nil {
			h.cut(cl, b, c)
		}
	case 8, 9, 10:
		h.guestSend(a, b, c)
	case opCorrupt:
		h.corrupt(a, c)
	case opPause:
		if !h.paused {
			h.logf("guest pauses")
			h.e.Guest.Pause()
			h.paused, h.m.paused = true, true
		}
	case opResume:
		h.logf("guest resumes; settle")
		h.settle()
	case opSlow:
		if cl := h.pick(a); cl != nil {
			slow := !cl.slow.Load()
			h.logf("conn %d slow=%v", cl.m.n, slow)
			cl.slow.Store(slow)
		}
	case opFill:
		want := 1 + int(a)%nSlots
		for len(h.m.live()) < want {
			if h.connect(false) == nil {
				break
			}
		}
	}
}

func (h *fuzzHarness) pickOrConnect(a byte) *fcl {
	if c := h.pick(a); c != nil {
		return c
	}
	return h.connect(false)
}

// connect dials a client and checks its handshake: the slot the model
// predicts (so the slot was free and the policy held), the cached ready
// frame byte for byte. When all 16 slots are taken and wait is set, the
// connection waits in the accept queue: its handshake is checked when the
// model gives it a slot (attachWaiters).
func (h *fuzzHarness) connect(wait bool) *fcl {
	h.t.Helper()
	for _, c := range h.m.conns {
		if c.pClose {
			h.logf("(settle first)")
			h.settle() // the slot a new client gets depends on it
			break
		}
	}
	mc := h.m.connect(wait)
	if mc == nil {
		return nil
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: h.e.Socket, Net: "unix"})
	if err != nil {
		h.fatalf("dial: %v", err)
	}
	c := &fcl{m: mc, conn: conn, br: bufio.NewReaderSize(conn, 64<<10),
		wq: make(chan wop, 64), wdone: make(chan struct{}), rdone: make(chan struct{})}
	h.cl = append(h.cl, c)
	go c.writer()
	if !mc.live {
		h.logf("connect: conn %d waits for a slot", mc.n)
		c.hs = make(chan error, 1)
		go c.reader() // reads the handshake when it comes
		h.sync()
		return nil
	}
	h.logf("connect: conn %d, slot %d", mc.n, mc.slot)
	conn.SetReadDeadline(time.Now().Add(fuzzWait))
	err = c.handshake()
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		close(c.rdone)
		h.fatalf("conn %d: handshake: %v", mc.n, err)
	}
	go c.reader()
	h.checkHandshake(c)
	h.sync()
	return c
}

func (c *fcl) handshake() error {
	var off [4]byte
	if _, err := io.ReadFull(c.br, off[:]); err != nil {
		return err
	}
	ready, err := readFrame(c.br)
	if err != nil {
		return err
	}
	c.offset, c.ready = binary.BigEndian.Uint32(off[:]), ready
	return nil
}

func (h *fuzzHarness) checkHandshake(c *fcl) {
	h.t.Helper()
	if want := uint32(c.m.slot) * frame.Step; c.offset != want {
		h.fatalf("conn %d got id offset %d (slot %d), want slot %d", c.m.n, c.offset, c.offset/frame.Step, c.m.slot)
	}
	if string(c.ready) != string(h.e.Ready) {
		h.fatalf("conn %d: handshake ready frame %x, want %x", c.m.n, c.ready, h.e.Ready)
	}
}

// attachWaiters checks the handshakes of waiting connections the model has
// given a slot. The relay gives it as it processes a disconnect, which
// while the guest is paused may still be pending: settle first then.
func (h *fuzzHarness) attachWaiters() {
	h.t.Helper()
	if len(h.m.attached) == 0 {
		return
	}
	if h.paused {
		h.logf("(settle: a waiting connection gets a slot)")
		h.settle()
	}
	for _, mc := range h.m.attached {
		c := h.cl[mc.n]
		h.logf("conn %d gets slot %d", mc.n, mc.slot)
		select {
		case err := <-c.hs:
			if err != nil {
				h.fatalf("conn %d: handshake after waiting: %v", mc.n, err)
			}
		case <-time.After(fuzzWait):
			h.fatalf("conn %d: no handshake %v after the model gave it slot %d", mc.n, fuzzWait, mc.slot)
		}
		h.checkHandshake(c)
	}
	h.m.attached = h.m.attached[:0]
}

// size turns a size byte into a data length: mostly small, sometimes (while
// the budget lasts) a large frame, bigger than the ring.
func (h *fuzzHarness) size(c byte) int {
	if c >= 0xf8 {
		n := (1 + int(c&7)) * 40 << 10
		if n <= h.large {
			h.large -= n
			return n
		}
	}
	return int(c&0x3f) * 13
}

func (h *fuzzHarness) data(n int) []byte {
	h.nonce++
	d := make([]byte, n)
	for i := range d {
		d[i] = byte(h.nonce + uint32(i)*7)
	}
	if n >= 4 {
		binary.BigEndian.PutUint32(d, h.nonce)
	}
	return d
}

func encode(id uint32, t frame.Type, p any) []byte {
	raw, err := frame.AppendMessage(nil, id, t, p)
	if err != nil {
		panic(err)
	}
	return raw
}

func withFlags(raw []byte, flags uint8) []byte {
	raw[frame.LenSize+4] = flags
	return raw
}

// ownSessions lists a connection's open sessions, sorted.
func (h *fuzzHarness) ownSessions(c *mConn) []uint32 {
	var ids []uint32
	for id, s := range h.m.sessions {
		if s.owner == c && !s.quarantined {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// quarantinedIn lists the quarantined sessions whose ids lie in slot's range.
func (h *fuzzHarness) quarantinedIn(slot int) []uint32 {
	var ids []uint32
	for id, s := range h.m.sessions {
		if s.quarantined && id != 0 && slotOfID(id) == slot {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (h *fuzzHarness) fresh(slot int) uint32 {
	h.nextID[slot]++
	return uint32(slot)*frame.Step + h.nextID[slot]
}

// clientID chooses the id of a client frame: sel 0 a fresh id for a session
// start, else the session started earlier in the same write or one of its
// sessions; 1 an open session even for a start; 2 a quarantined id in its
// range (a collision); 3 the range's edges.
func (h *fuzzHarness) clientID(c *mConn, start bool, sel, k int) uint32 {
	id := h.pickClientID(c, start, sel, k)
	if start {
		h.batchStart = id
	}
	return id
}

func (h *fuzzHarness) pickClientID(c *mConn, start bool, sel, k int) uint32 {
	switch sel {
	case 0:
		if !start && h.batchStart != 0 {
			return h.batchStart
		}
	case 2:
		if q := h.quarantinedIn(c.slot); len(q) > 0 {
			return q[k%len(q)]
		}
	case 3:
		lo := uint32(c.slot) * frame.Step
		if k%2 == 0 {
			return lo + frame.Step - 1
		}
		return lo + 1
	}
	if own := h.ownSessions(c); len(own) > 0 && (!start || sel == 1) {
		return own[k%len(own)]
	}
	return h.fresh(c.slot)
}

// clientFrame builds one valid frame of kind for connection c.
func (h *fuzzHarness) clientFrame(c *mConn, kind, sel int, size byte, k int) []byte {
	switch kind & 7 {
	case 0:
		h.nonce++
		return encode(h.clientID(c, true, sel, k), frame.TypeExecRequest, frame.ExecRequest{
			Cmd: fmt.Sprintf("cmd-%d", h.nonce), Args: []string{}, Env: []string{}, TTY: size&1 != 0, Rows: 24, Cols: 80, Rlimits: []frame.Rlimit{}})
	case 1:
		return encode(h.clientID(c, false, sel, k), frame.TypeExecStdin, frame.ExecStdin{Data: h.data(h.size(size))})
	case 2:
		return encode(h.clientID(c, false, sel, k), frame.TypeExecSignal, frame.ExecSignal{Signal: int32(1 + size%8)}) // never 9
	case 3:
		return encode(h.clientID(c, false, sel, k), frame.TypeExecResize, frame.ExecResize{Rows: uint16(size), Cols: 80})
	case 4: // stdin EOF, flagged TERMINAL: the client ends its session
		return withFlags(encode(h.clientID(c, false, sel, k), frame.TypeExecStdin, frame.ExecStdin{}), frame.FlagTerminal)
	case 5:
		raw, _ := frame.Message{ID: h.clientID(c, true, sel, k), Flags: frame.FlagSessionStart, Version: frame.Version, Type: frame.TypeFsRequest,
			Payload: h.data(int(size % 16))}.Append(nil)
		return raw
	case 6: // core.shutdown under id 0, with a payload that tells it apart
		raw, _ := frame.Message{ID: 0, Flags: frame.FlagShutdown, Version: frame.Version, Type: frame.TypeShutdown,
			Payload: h.data(8)}.Append(nil)
		return raw
	default: // any flags at all on a data frame
		flags := size >> 5
		return withFlags(encode(h.clientID(c, flags&frame.FlagSessionStart != 0, sel, k), frame.TypeFsData, frame.FsData{Data: h.data(int(size & 0x1f))}), flags)
	}
}

// write sends bytes for a client and feeds them to the model. A dry run
// first tells whether the relay will close the connection on them; a
// reading client is then made to receive everything routed to it before,
// since frames still queued to it are discarded with the connection.
func (h *fuzzHarness) write(c *fcl, b []byte, split int, then wop) {
	h.t.Helper()
	h.batchStart = 0
	dry := h.m.clone()
	dc := dry.conns[c.m.n]
	dry.write(dc, b)
	closes := !dc.live
	if closes || then.close {
		h.waitReceived(c)
		c.m.minRecv = len(c.m.exp)
		if c.slow.Load() {
			c.m.minRecv = 0
		}
	}
	var ops []wop
	if split > 0 && split < len(b) {
		ops = append(ops, wop{b: b[:split], mayFail: closes}, wop{sleep: 200 * time.Microsecond}, wop{b: b[split:], mayFail: closes})
	} else if len(b) > 0 {
		ops = append(ops, wop{b: b, mayFail: closes})
	}
	if then.close {
		ops = append(ops, then)
	}
	c.queue(ops...)
	refusals := h.m.st.IDCollisions + h.m.st.QuarantineOverflows
	h.m.write(c.m, b)
	if n := h.m.st.IDCollisions + h.m.st.QuarantineOverflows - refusals; n > 0 {
		h.logf("  → the relay refuses %d session start(s)", n)
	}
	if closes {
		h.logf("  → the relay closes conn %d: %s", c.m.n, c.m.closed)
	}
	if then.close && c.m.live {
		h.m.disconnect(c.m, "client")
	}
	if !h.paused {
		h.sync()
		return
	}
	// Paused: give the writes a moment to land (they may block for good
	// on a full ring), so that what follows happens while they wait.
	for deadline := time.Now().Add(5 * time.Millisecond); c.wpending.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Microsecond)
	}
}

func (h *fuzzHarness) send(c *fcl, b, size byte) {
	kind, n, split, sel := int(b&7), 1+int(b>>3)&3, b&0x20 != 0, int(b>>6)
	var buf []byte
	var what []string
	for k := range n {
		if !c.m.live {
			break
		}
		f := h.clientFrame(c.m, kind+k, sel, size, k)
		what = append(what, describe(f))
		buf = append(buf, f...)
	}
	cut := 0
	if split {
		cut = 1 + int(size)%(len(buf)-1)
	}
	h.logf("conn %d sends %s (cut at %d)", c.m.n, strings.Join(what, " "), cut)
	h.write(c, buf, cut, wop{})
}

// bad sends a frame the relay must refuse the client for, after some valid
// ones (which go through) and before one more (which does not).
func (h *fuzzHarness) bad(c *fcl, b, d byte) {
	var buf []byte
	for k := range int(b>>3) % 3 {
		buf = append(buf, h.clientFrame(c.m, int(d)+k, 0, d, k)...)
	}
	slot := c.m.slot
	lo := uint32(slot) * frame.Step
	stdin := func(id uint32, flags uint8) []byte {
		return withFlags(encode(id, frame.TypeExecStdin, frame.ExecStdin{Data: []byte("x")}), flags)
	}
	var what string
	switch (b & 7) % 6 {
	case 0: // another slot's range
		other := (slot + 1 + int(d)%15) % nSlots
		id := uint32(other)*frame.Step + 1 + uint32(d>>4)%4
		buf = append(buf, stdin(id, 0)...)
		what = fmt.Sprintf("foreign id %d (slot %d)", id, other)
	case 1: // k·STEP itself
		buf = append(buf, stdin(lo, d&7&^frame.FlagShutdown)...)
		what = fmt.Sprintf("id %d = slot·STEP", lo)
	case 2: // id 0 without SHUTDOWN
		buf = append(buf, stdin(0, d&7&^frame.FlagShutdown)...)
		what = "id 0 without SHUTDOWN"
	case 3: // len under 5
		buf = binary.BigEndian.AppendUint32(buf, uint32(d)%frame.MinLen)
		buf = append(buf, 0, 0, 0, 1, 0, 0xa0)
		what = fmt.Sprintf("length %d", uint32(d)%frame.MinLen)
	case 4: // len over 4 MiB
		l := uint32(frame.MaxLen) + 1 + uint32(d)
		if d&1 != 0 {
			l = 0xffffffff
		}
		buf = binary.BigEndian.AppendUint32(buf, l)
		buf = append(buf, 0, 0, 0, 1, 0, 0xa0)
		what = fmt.Sprintf("length %d", l)
	default: // just past the range's end
		id := lo + frame.Step + uint32(d%3)
		buf = append(buf, stdin(id, 0)...)
		what = fmt.Sprintf("id %d past the range", id)
	}
	buf = append(buf, stdin(lo+1, 0)...)
	h.logf("conn %d sends %d bytes ending in a bad frame: %s", c.m.n, len(buf), what)
	h.write(c, buf, 0, wop{})
	if c.m.live {
		h.fatalf("model did not close conn %d on a bad frame", c.m.n)
	}
}

// hangUp closes a client, optionally right after one last frame (a client
// may send core.shutdown and hang up).
func (h *fuzzHarness) hangUp(c *fcl, b, size byte) {
	var buf []byte
	if b&1 != 0 {
		buf = h.clientFrame(c.m, int(b>>1), int(b>>4)&3, size, 0)
		h.logf("conn %d sends %s and hangs up (slow=%v)", c.m.n, describe(buf), c.slow.Load())
	} else {
		h.logf("conn %d hangs up (slow=%v)", c.m.n, c.slow.Load())
	}
	c.closedByUs = true
	h.write(c, buf, 0, wop{close: true})
}

// cut writes part of a frame, then hangs up.
func (h *fuzzHarness) cut(c *fcl, b, size byte) {
	var buf []byte
	if b&8 != 0 {
		buf = h.clientFrame(c.m, int(b>>4), 0, size, 0)
	}
	f := h.clientFrame(c.m, int(b), 0, size, 1)
	at := 1 + int(size)%(len(f)-1)
	buf = append(buf, f[:at]...)
	h.logf("conn %d sends %d bytes, the last %d of %s, and hangs up (slow=%v)", c.m.n, len(buf), at, describe(f), c.slow.Load())
	c.closedByUs = true
	h.write(c, buf, 0, wop{close: true})
}

// guestID chooses the id of a guest frame.
func (h *fuzzHarness) guestID(a byte) uint32 {
	sel, idx := a&7, int(a>>3)
	switch sel {
	case 0, 1, 2:
		if ids := slices.Sorted(mapKeys(h.m.sessions)); len(ids) > 0 {
			return ids[idx%len(ids)]
		}
	case 5:
		var free []int
		for s, c := range h.m.slots {
			if c == nil {
				free = append(free, s)
			}
		}
		if len(free) > 0 {
			return uint32(free[idx%len(free)])*frame.Step + 1 + uint32(idx>>4)
		}
	case 6:
		s := uint32(idx / 5)
		return [...]uint32{0, 0xffffffff, nSlots * frame.Step, s * frame.Step, s*frame.Step + frame.Step - 1}[idx%5]
	case 7:
		if len(h.m.conns) > 0 {
			c := h.m.conns[idx%len(h.m.conns)]
			return uint32(c.slot)*frame.Step + 1 + uint32(idx>>3)%4
		}
	}
	if live := h.m.live(); len(live) > 0 {
		c := live[idx%len(live)]
		return uint32(c.slot)*frame.Step + 1 + uint32(idx>>2)%4
	}
	return uint32(idx%nSlots)*frame.Step + 1
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// guestFrame builds one guest frame of type t for id.
func (h *fuzzHarness) guestFrame(id uint32, t int, size byte) []byte {
	switch t & 7 {
	case 0, 1:
		return encode(id, frame.TypeExecStdout, frame.ExecStdout{Data: h.data(h.size(size))})
	case 2:
		return encode(id, frame.TypeExecStderr, frame.ExecStderr{Data: h.data(int(size))})
	case 3:
		return encode(id, frame.TypeExecExited, frame.ExecExited{Code: int32(size)})
	case 4:
		h.nonce++
		return encode(id, frame.TypeExecFailed, frame.ExecFailed{Kind: frame.FailNotFound, Message: fmt.Sprintf("guest %d", h.nonce)})
	case 5:
		h.nonce++
		return encode(id, frame.TypeExecStarted, frame.ExecStarted{Pid: h.nonce})
	case 6:
		return encode(id, frame.TypeFsResponse, frame.FsResponse{OK: true})
	default: // any flags
		return withFlags(encode(id, frame.TypeFsData, frame.FsData{Data: h.data(int(size & 0x1f))}), size>>5)
	}
}

// unsafe reports whether a guest frame's fate could depend on client frames
// the relay may still be holding back while the guest is paused.
func (h *fuzzHarness) unsafe(raw []byte) bool {
	id := binary.BigEndian.Uint32(raw[frame.LenSize:])
	terminal := raw[frame.LenSize+4]&frame.FlagTerminal != 0
	slot := slotOfID(id)
	for _, c := range h.m.conns {
		if c.slot != slot {
			continue
		}
		if c.pClose { // is the slot still taken, the session quarantined yet?
			return true
		}
		if c.live && c.pRefusal { // which comes first in its stream?
			return true
		}
		if c.live && terminal && c.pSess { // does it end a session, or come before it starts?
			return true
		}
	}
	return false
}

func (h *fuzzHarness) guestSend(a, b, size byte) {
	id := h.guestID(a)
	t, n, split := int(b&7), 1+int(b>>3)&3, b&0x20 != 0
	var frames [][]byte
	for k := range n {
		frames = append(frames, h.guestFrame(id, t+k, size))
	}
	h.guestWrite(frames, nil, split, size)
}

func (h *fuzzHarness) corrupt(a, size byte) {
	n := 1 + int(size)%64
	if size >= 0xf0 {
		n = 4096 + int(size&0xf)*1000
	}
	junk := make([]byte, n)
	for i := range junk {
		junk[i] = 0xff
	}
	h.guestWrite([][]byte{h.guestFrame(h.guestID(a), 0, size&0x3f)}, junk, false, 0)
}

func (h *fuzzHarness) guestWrite(frames [][]byte, junk []byte, split bool, cut byte) {
	h.t.Helper()
	for _, f := range frames {
		if h.unsafe(f) {
			h.logf("(settle first)")
			h.settle()
			break
		}
	}
	var buf []byte
	buf = append(buf, junk...)
	var what []string
	for _, f := range frames {
		where, c := h.m.route(binary.BigEndian.Uint32(f[frame.LenSize:]))
		if c != nil {
			where = fmt.Sprintf("conn %d", c.n)
		}
		what = append(what, describe(f)+"→"+where)
		buf = append(buf, f...)
	}
	if len(junk) > 0 {
		h.logf("guest sends %d bytes of junk, then %s", len(junk), strings.Join(what, " "))
		h.m.corrupt(len(junk))
	} else {
		h.logf("guest sends %s", strings.Join(what, " "))
	}
	for _, f := range frames {
		h.m.guestFrame(f)
	}
	if split {
		at := 1 + int(cut)%(len(buf)-1)
		h.e.Guest.Send(h.t, buf[:at])
		runtime.Gosched()
		h.e.Guest.Send(h.t, buf[at:])
	} else {
		h.e.Guest.Send(h.t, buf)
	}
	h.sync()
}

// finish resumes everything, hangs up every client, and compares all that
// arrived with the model.
func (h *fuzzHarness) finish() {
	h.t.Helper()
	h.op++
	h.logf("finish")
	h.settle()
	for _, c := range h.cl {
		c.slow.Store(false)
	}
	for live := h.m.live(); len(live) > 0; live = h.m.live() {
		for _, mc := range live {
			c := h.cl[mc.n]
			if _, err, done := c.received(); done {
				h.fatalf("conn %d (slot %d) was closed by the relay: %v", mc.n, mc.slot, err)
			}
			h.waitReceived(c)
			c.m.minRecv = len(c.m.exp)
			c.closedByUs = true
			c.queue(wop{close: true})
			h.m.disconnect(mc, "client")
			h.sync()
			h.attachWaiters() // they are closed in the next round
		}
	}
	// The guest: every frame the model predicts, then nothing more.
	total := h.m.guestTotal()
	got := make([][]byte, 0, total)
	for range total {
		got = append(got, h.e.Guest.Next(h.t, fuzzWait))
	}
	h.e.Guest.Quiet(h.t, 2*time.Millisecond)
	if err := h.m.checkGuest(got); err != nil {
		h.fatalf("%v", err)
	}
	// The clients.
	for _, c := range h.cl {
		c.wqClosed = true
		close(c.wq)
	}
	for _, c := range h.cl {
		select {
		case <-c.rdone:
		case <-time.After(fuzzWait):
			h.fatalf("conn %d (slot %d) still open; the relay closed it (%s)", c.m.n, c.m.slot, c.m.closed)
		}
		<-c.wdone // the writer never blocks once its connection is closed
		if p := c.werr.Load(); p != nil {
			h.fatalf("conn %d (slot %d): write: %v", c.m.n, c.m.slot, *p)
		}
		c.mu.Lock()
		got, rerr := c.got, c.rerr
		c.mu.Unlock()
		// EOF, or mid-frame if the relay dropped output it had queued.
		if c.m.byRelay && !c.closedByUs && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, io.ErrUnexpectedEOF) && !errors.Is(rerr, syscall.ECONNRESET) {
			h.fatalf("conn %d (slot %d) closed by the relay (%s), but reading it gave %v", c.m.n, c.m.slot, c.m.closed, rerr)
		}
		if err := h.m.checkClient(c.m, got); err != nil {
			h.fatalf("%v", err)
		}
	}
}

// fuzzOp is one operation of a seed.
type fuzzOp [4]byte

func fuzzSeed(cfg byte, ops ...fuzzOp) []byte {
	b := []byte{cfg}
	for _, op := range ops {
		b = append(b, op[:]...)
	}
	return b
}

// fuzzRelaySeeds are hand-written inputs covering every operation.
func fuzzRelaySeeds() [][]byte {
	const (
		execReq  = 0
		stdin    = 1
		sigKind  = 2
		resize   = 3
		termEOF  = 4
		fsReq    = 5
		shutdown = 6
		anyFlags = 7
	)
	send := func(client, kind, count int, split bool, sel int, size byte) fuzzOp {
		b := byte(kind) | byte(count-1)<<3 | byte(sel)<<6
		if split {
			b |= 0x20
		}
		return fuzzOp{opSend, byte(client), b, size}
	}
	guest := func(target byte, typ, count int, split bool, size byte) fuzzOp {
		b := byte(typ) | byte(count-1)<<3
		if split {
			b |= 0x20
		}
		return fuzzOp{opGuest, target, b, size}
	}
	// guest targets: session k (sel 0), live client k (sel 3), a free slot
	// (sel 5), specials (sel 6: k%5 picks 0, 0xffffffff, 16·STEP, s·STEP,
	// s·STEP+STEP-1 for s = k/5).
	session := func(k int) byte { return byte(k << 3) }
	client := func(k int) byte { return byte(3 | k<<3) }
	free := byte(5)
	special := func(k int) byte { return byte(6 | k<<3) }
	connect := fuzzOp{opConnect}
	pause, resume := fuzzOp{opPause}, fuzzOp{opResume}
	return [][]byte{
		// Two clients, sessions, output both ways, a clean end.
		fuzzSeed(0,
			connect, connect,
			send(0, execReq, 2, false, 0, 10),
			send(1, execReq, 1, false, 0, 3),
			guest(client(0), 5, 3, false, 20), // started, fs.response (ends conn 0's session), fs.data
			guest(session(0), 0, 2, true, 40), // stdout ×2 to conn 1's session, split write
			guest(session(0), 3, 1, false, 0), // exited: ends it
			send(1, stdin, 2, true, 0, 30),    // split write
			send(0, sigKind, 1, false, 0, 1),
			send(0, resize, 1, false, 0, 50),
			send(0, termEOF, 1, false, 0, 0),  // client ends a session
			guest(special(0), 0, 1, false, 5), // id 0 → slot 0
			guest(special(1), 0, 1, false, 5), // 0xffffffff → slot 15: nobody
			guest(free, 2, 1, false, 5),       // empty slot: dropped
			fuzzOp{opClose, 0, 0},             // clean hang-up: SIGKILLs
		),
		// Session limit: MaxSessions 2, a third start is a protocol error.
		fuzzSeed(0,
			connect, connect,
			send(0, execReq, 1, false, 0, 0),
			send(0, fsReq, 1, false, 0, 0),
			send(0, execReq, 1, false, 0, 0),
			guest(client(1), 0, 1, false, 3),
		),
		// Quarantine: a client with sessions leaves; late output is dropped,
		// the guest's exit ends the quarantine; a new client gets another slot.
		fuzzSeed(2,
			connect,
			send(0, execReq, 3, false, 0, 7), // request, stdin, signal
			send(0, execReq, 1, false, 0, 7),
			fuzzOp{opClose, 0, 0},
			guest(session(0), 0, 1, false, 9), // quarantined: dropped
			connect,                           // slot 1: slot 0 is quarantined
			guest(session(0), 3, 1, false, 0), // exit: quarantine of one over
			guest(session(0), 0, 1, false, 9), // the other: still dropped
			connect,                           // slot 2
			guest(session(0), 4, 1, false, 0), // failed: quarantine over
			connect,                           // slot 0 again
			guest(client(0), 0, 1, false, 4),
		),
		// Collision: all slots busy or quarantined, the heir of a quarantined
		// slot starts a session under a quarantined id: refused.
		fuzzSeed(4,
			connect,
			send(0, execReq, 1, false, 0, 0),
			send(0, fsReq, 1, false, 0, 0),
			fuzzOp{opClose, 0, 0},
			fuzzOp{opFill, 15},                // 16 live: slot 0 last
			send(0, execReq, 1, false, 2, 0),  // the heir in slot 0 collides: exec.failed
			send(0, fsReq, 1, false, 2, 1),    // collision: fs.response
			send(0, stdin, 1, false, 2, 5),    // plain frame under that id: forwarded
			guest(session(0), 3, 1, false, 0), // guest ends one
			send(0, execReq, 1, false, 2, 0),  // free now: opens
			guest(session(0), 0, 1, false, 6),
		),
		// Full quarantine: MaxSessions 2, both left quarantined in slot 0;
		// its heir's fresh session start is refused until the guest ends one.
		fuzzSeed(0,
			connect,
			send(0, execReq, 1, false, 0, 0),
			send(0, execReq, 1, false, 0, 0),
			fuzzOp{opClose, 0, 0},
			fuzzOp{opFill, 15},
			send(0, execReq, 1, false, 0, 0), // refused: quarantine full
			send(0, fsReq, 1, false, 0, 0),   // refused: fs.response
			guest(session(1), 3, 1, false, 0),
			send(0, execReq, 2, false, 0, 0), // opens, then stdin to it
			send(0, execReq, 1, false, 0, 0), // refused again
			guest(client(0), 0, 1, false, 3),
		),
		// Accept queue: with 16 clients, two more wait; the first gets the
		// slot of a client that leaves (quarantined: its start collides),
		// the second that of one refused for a foreign id, while paused.
		fuzzSeed(2,
			connect,
			send(0, execReq, 2, false, 0, 0),
			fuzzOp{opFill, 15},
			connect, connect, // both wait
			fuzzOp{opClose, 0, 0},
			send(0, execReq, 1, false, 2, 0), // the heir collides
			pause,
			fuzzOp{opBad, 3, 0, 0},
			send(3, execReq, 2, false, 0, 0),
			guest(client(3), 0, 1, false, 5),
			resume,
		),
		// A client over its session limit is disconnected while a
		// connection waits: the waiter gets the slot at once, and the
		// relay must not go on with the departed client's frames in it.
		fuzzSeed(0,
			connect,
			fuzzOp{opFill, 15},
			connect, // waits
			send(0, execReq, 1, false, 0, 0),
			send(0, execReq, 1, false, 0, 0),
			send(0, execReq, 2, false, 0, 0), // a third session: protocol error
			send(0, execReq, 2, false, 0, 0), // the waiter, in slot 0
			guest(client(0), 0, 1, false, 5),
		),
		// Foreign ids and bad lengths, with valid frames before (forwarded)
		// and after (not).
		fuzzSeed(6,
			connect, connect, connect, connect, connect, connect,
			send(0, execReq, 1, false, 0, 0),
			fuzzOp{opBad, 0, 0 | 2<<3, 0x10}, // foreign id after two frames
			fuzzOp{opBad, 0, 1, 3},           // k·STEP
			fuzzOp{opBad, 0, 2 | 1<<3, 0},    // id 0 without SHUTDOWN
			fuzzOp{opBad, 0, 3, 4},           // length 4
			fuzzOp{opBad, 0, 4 | 1<<3, 1},    // length 0xffffffff
			fuzzOp{opBad, 0, 5, 2},           // past the range
			connect,
			guest(client(0), 0, 1, false, 1),
		),
		// Hang-ups: mid-frame, after core.shutdown, after a session start.
		fuzzSeed(8,
			connect, connect, connect,
			send(0, execReq, 1, false, 0, 0),
			fuzzOp{opCut, 0, stdin | 8, 30},        // whole request, then half a stdin
			fuzzOp{opCut, 0, execReq, 3},           // 4 bytes of a request
			fuzzOp{opClose, 0, 1 | shutdown<<1, 0}, // core.shutdown and hang up
			fuzzOp{opClose, 0, 1 | execReq<<1, 0},  // a request and hang up: SIGKILL
			guest(special(0), 0, 2, false, 3),
		),
		// Full ring: the guest stops reading while clients send large frames;
		// output flows meanwhile; a client hangs up while its frames wait.
		fuzzSeed(0,
			connect, connect,
			send(0, execReq, 2, false, 0, 0xf9), // a request and 80 KiB of stdin
			pause,
			send(0, stdin, 3, false, 0, 0xfa), // 3 × 120 KiB
			send(1, execReq, 2, true, 0, 0x3f),
			guest(client(0), 0, 2, false, 0x20),
			guest(client(1), 1, 1, false, 0xf8), // 40 KiB to a client
			send(1, shutdown, 1, false, 0, 0),
			fuzzOp{opClose, 1, 0},
			guest(client(0), 3, 1, false, 0), // terminal, no pending start: no settle
			connect,                          // a close is pending: settle first
			resume,
			guest(session(0), 0, 1, false, 1),
		),
		// Paused guest, a collision and a terminal that must wait (settle).
		fuzzSeed(5,
			connect,
			send(0, execReq, 1, false, 0, 0),
			fuzzOp{opClose, 0, 0},
			fuzzOp{opFill, 15},
			pause,
			send(0, execReq, 1, false, 2, 0), // refused while paused
			guest(client(0), 0, 1, false, 4), // must not overtake the refusal
			send(3, execReq, 1, false, 0, 0),
			guest(client(3), 3, 1, false, 0), // ends the session, or not yet?
			send(3, stdin, 1, false, 0, 0xfb),
			resume,
		),
		// Slow readers: a client stops reading while output piles up, hangs
		// up without reading it; another stops, resumes.
		fuzzSeed(1,
			connect, connect,
			send(0, execReq, 1, false, 0, 0),
			fuzzOp{opSlow, 0},
			guest(client(0), 0, 3, false, 0xfb), // 3 × 160 KiB to the slow one
			guest(client(1), 0, 2, false, 0x30),
			fuzzOp{opSlow, 1},
			guest(client(1), 0, 2, false, 0x31),
			send(0, stdin, 2, false, 0, 20),
			fuzzOp{opSlow, 1},
			fuzzOp{opClose, 0, 1 | stdin<<1, 9},
			guest(client(0), 0, 1, false, 2),
		),
		// Slow reader with output queued, guest paused with a full ring: the
		// client sends frames and hangs up; the relay's next write to it
		// fails (EPIPE), and what it sent must still reach the guest.
		fuzzSeed(0,
			connect, connect,
			send(0, execReq, 1, false, 0, 0),
			fuzzOp{opSlow, 0},
			guest(client(0), 0, 1, false, 1),    // the reader's last frame
			guest(client(0), 0, 2, false, 0xfc), // 2 × 200 KiB to the slow one,
			guest(client(0), 0, 2, false, 0xfc), // more than its socket holds
			pause,
			send(1, stdin, 1, false, 0, 0xf8), // 40 KiB fills the ring
			send(0, stdin, 2, false, 0, 0x3f),
			fuzzOp{opClose, 0, 1 | shutdown<<1, 0},
			resume,
		),
		// Corrupt guest framing between routed frames.
		fuzzSeed(0,
			connect,
			send(0, execReq, 1, false, 0, 0),
			fuzzOp{opCorrupt, session(0), 0, 10},
			guest(session(0), 0, 1, false, 3),
			fuzzOp{opCorrupt, client(0), 0, 0xf3}, // 7 KiB of junk
			fuzzOp{opCorrupt, free, 0, 1},
			guest(session(0), 3, 1, true, 0),
		),
		// Flags: any flags on client and guest data frames; shutdown, edges
		// of the id range.
		fuzzSeed(3,
			connect, connect,
			send(0, anyFlags, 1, false, 0, 0x40|3), // SESSION_START
			send(0, anyFlags, 1, false, 0, 0x60|4), // SESSION_START|TERMINAL
			send(0, anyFlags, 1, false, 0, 0x80|5), // SHUTDOWN
			send(0, anyFlags, 1, false, 0, 0x20|6), // TERMINAL
			send(1, execReq, 2, false, 3, 0),       // at the range's edges
			send(1, shutdown, 2, false, 0, 0),
			guest(special(9), 7, 1, false, 0xe0), // slot 1's last id, all flags
			guest(special(8), 7, 1, false, 0x20), // 1·STEP (slot 1), TERMINAL
			guest(session(1), 7, 2, false, 0x20),
			fuzzOp{opClose, 1, 0},
		),
		// Many clients come and go; slots are reused lowest first.
		fuzzSeed(7,
			fuzzOp{opFill, 9},
			fuzzOp{opClose, 3, 0}, fuzzOp{opClose, 5, 0},
			fuzzOp{opCut, 0, 1, 1},
			connect, connect, connect,
			send(7, execReq, 1, false, 0, 0),
			fuzzOp{opClose, 7, 0},
			fuzzOp{opFill, 15},
			fuzzOp{opClose, 0, 0},
			connect,
			guest(session(0), 3, 1, false, 0),
			connect,
		),
	}
}
