package relay_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/guest"
	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/relaytest"
)

// Peers that fail: EPIPE and ECONNRESET as the relay really gets them from
// AF_UNIX stream sockets, and clients that vanish with data pending either
// way. What Linux does (checked on 6.x with a socketpair):
//
//   - peer closed, its receive queue empty: our write → EPIPE, our read → EOF;
//   - peer closed with unread data in its receive queue: our read returns
//     what is left, then ECONNRESET once, then EOF; our write → EPIPE (the
//     reset is reported by reads only);
//   - peer did shutdown(SHUT_RD): our write → EPIPE, our read → EAGAIN, and
//     no EPOLLRDHUP.
//
// The relay logs a client's departure as "client disconnected" with a
// reason: "closed by client" (EOF), "read failed" (ECONNRESET), "write
// failed" (EPIPE).

// startLogged starts a relay (collecting guest) with its log captured.
func startLogged(t *testing.T, ringCap int, tweak func(*relay.Options)) (*relaytest.Env, *relay.Relay, *logCapture) {
	t.Helper()
	log := &logCapture{}
	e := relaytest.Start(t, Reactor, relaytest.Config{Ring: ringCap, Options: func(o *relay.Options) {
		o.Logger = log.logger()
		o.EvictGrace = 30 * time.Second // nothing here may be explained by an eviction
		if tweak != nil {
			tweak(o)
		}
	}})
	return e, e.Server.(*relay.Relay), log
}

func disconnectOf(slot int) func(logRecord) bool {
	return func(rec logRecord) bool {
		return rec.str("msg") == "client disconnected" && int(rec.num("slot")) == slot
	}
}

// openSessions sends n exec requests from c and takes them off the guest.
func openSessions(t *testing.T, e *relaytest.Env, c *relaytest.Client, first, n uint32) {
	t.Helper()
	for i := range n {
		c.SendMsg(t, c.ID(first+i), frame.TypeExecRequest, frame.ExecRequest{Cmd: "sleep", Args: []string{"9"}, Env: []string{}, Rlimits: []frame.Rlimit{}})
		if m := relaytest.Decode(t, e.Guest.Next(t, 5*time.Second)); m.Type != frame.TypeExecRequest || m.ID != c.ID(first+i) {
			t.Fatalf("guest got %s id %d, want the exec request %d", m.TypeName, m.ID, c.ID(first+i))
		}
	}
}

// expectKills takes n frames off the guest and checks that they are exactly
// SIGKILLs for ids, in any order.
func expectKills(t *testing.T, e *relaytest.Env, ids ...uint32) {
	t.Helper()
	var got []uint32
	for range ids {
		m := relaytest.Decode(t, e.Guest.Next(t, 5*time.Second))
		var sig frame.ExecSignal
		if m.Type != frame.TypeExecSignal || m.Into(&sig) != nil || sig.Signal != 9 {
			t.Fatalf("guest got %s id %d, want a SIGKILL", m.TypeName, m.ID)
		}
		got = append(got, m.ID)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(got, want) {
		t.Fatalf("SIGKILLs for %v, want %v", got, want)
	}
}

// stdout is a guest stdout frame under id carrying seq.
func stdout(t *testing.T, id uint32, seq int, size int) []byte {
	data := bytes.Repeat([]byte{byte(seq)}, size)
	data[0], data[1] = byte(seq>>8), byte(seq)
	raw, err := frame.AppendMessage(nil, id, frame.TypeExecStdout, frame.ExecStdout{Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// receiveAll reads frames on c and checks they are exactly want, in order.
func receiveAll(c *relaytest.Client, want [][]byte) error {
	for i, w := range want {
		got, err := c.Recv(10 * time.Second)
		if err != nil {
			return fmt.Errorf("frame %d of %d: %w", i, len(want), err)
		}
		if !bytes.Equal(got, w) {
			return fmt.Errorf("frame %d of %d differs (%d bytes, want %d)", i, len(want), len(got), len(w))
		}
	}
	return nil
}

// TestPeerFaultEPIPE: a client shuts down its read side while the guest
// streams to it (shutdown(SHUT_RD): no hang-up for the relay to see, the
// write is what fails). The relay's next write gets EPIPE: it disconnects
// the client with reason "write failed", counts it, SIGKILLs its three open
// sessions, quarantines them (late output is dropped, counted), and a
// bystander streamed to all along loses nothing.
func TestPeerFaultEPIPE(t *testing.T) {
	e, r, log := startLogged(t, 0, nil)
	v, b := e.Dial(t), e.Dial(t)
	openSessions(t, e, v, 1, 3)
	openSessions(t, e, b, 1, 1)

	var toB [][]byte
	for i := range 64 {
		e.Guest.Send(t, stdout(t, v.ID(1+uint32(i%3)), i, 1000))
		f := stdout(t, b.ID(1), i, 1000)
		toB = append(toB, f)
		e.Guest.Send(t, f)
	}
	for range 64 { // v reads the first burst whole: nothing is queued for it
		v.Next(t, 5*time.Second)
	}
	if err := v.Conn.CloseRead(); err != nil {
		t.Fatal(err)
	}
	before := r.Stats()
	for i := 64; i < 128; i++ {
		e.Guest.Send(t, stdout(t, v.ID(1+uint32(i%3)), i, 1000))
		f := stdout(t, b.ID(1), i, 1000)
		toB = append(toB, f)
		e.Guest.Send(t, f)
	}
	rec := log.waitFor(t, 5*time.Second, "the victim's disconnect", disconnectOf(v.Slot()))
	if rec.str("reason") != "write failed" || rec.str("err") != unix.EPIPE.Error() || rec.num("sessions_killed") != 3 {
		t.Fatalf("disconnect logged as %v; want reason \"write failed\", err %q, sessions_killed 3", rec, unix.EPIPE.Error())
	}
	expectKills(t, e, v.ID(1), v.ID(2), v.ID(3))
	if err := receiveAll(b, toB); err != nil {
		t.Fatalf("bystander: %v", err)
	}
	// Late output of the dead client's sessions is dropped, counted, and
	// the guest ending them releases the quarantine.
	for i := range uint32(3) {
		e.Guest.SendMsg(t, v.ID(1+i), frame.TypeExecExited, frame.ExecExited{Code: -9})
	}
	relaytest.Eventually(t, 5*time.Second, "the quarantine to empty", func() bool { return r.Stats().SessionsActive == 1 })
	s := r.Stats()
	if s.Disconnects-before.Disconnects != 1 || s.KillsSent != 3 || s.ClientsActive != 1 || s.Evictions != 0 ||
		s.QuarantineDrops < 3 || s.ProtocolErrors != 0 {
		t.Fatalf("counters after the EPIPE: %+v", s)
	}
	t.Logf("victim disconnected: %v; quarantine drops %d", rec, s.QuarantineDrops)
}

// TestPeerFaultCloseMidStream: a client closes for good while the guest is
// streaming to it, with unread data in its socket. Whichever the relay
// meets first — its write failing (EPIPE) or its read reporting the reset
// (ECONNRESET) — the client is disconnected at once (not evicted), its
// sessions are SIGKILLed, and a bystander streamed to in the same guest
// stream loses nothing. Repeated so that both orders get a chance.
func TestPeerFaultCloseMidStream(t *testing.T) {
	e, r, log := startLogged(t, 0, nil)
	b := e.Dial(t)
	openSessions(t, e, b, 1, 1)
	reasons := map[string]int{}
	var toB [][]byte
	bseq := 0
	const rounds = 6
	for round := range rounds {
		v := e.Dial(t)
		openSessions(t, e, v, 1, 2)
		done, gone := make(chan struct{}), make(chan struct{})
		var sendErr error
		var mu sync.Mutex
		sent := 0
		go func() { // the guest streams to both, interleaved, until v is gone
			defer close(done)
			for i := 0; i < 5000; i++ {
				select {
				case <-gone:
					return
				default:
				}
				raw := stdout(t, v.ID(1+uint32(i%2)), i, 4000)
				if _, err := e.Guest.Console.Backend().Write(raw); err != nil {
					sendErr = err
					return
				}
				// The bystander reads only at the end: keep what waits for
				// it (~3.3 MB) well under its 8 MiB buffer, or a slow
				// machine gets it evicted.
				mu.Lock()
				full := len(toB) >= 6000
				mu.Unlock()
				if full {
					continue
				}
				f := stdout(t, b.ID(1), bseq+sent, 500)
				mu.Lock()
				toB = append(toB, f)
				sent++
				mu.Unlock()
				if _, err := e.Guest.Console.Backend().Write(f); err != nil {
					sendErr = err
					return
				}
			}
		}()
		for range 10 + round*5 {
			v.Next(t, 5*time.Second)
		}
		if !queued(v.Conn, 1, 5*time.Second) {
			t.Fatalf("round %d: nothing more reached the victim; relay %+v; log:\n%s", round, r.Stats(), log)
		}
		v.Conn.Close() // with more on its way and unread
		rec := log.waitFor(t, 5*time.Second, "the victim's disconnect", disconnectOf(v.Slot()))
		if rec.num("sessions_killed") != 2 {
			t.Fatalf("round %d: disconnect logged as %v, want sessions_killed 2", round, rec)
		}
		close(gone)
		<-done
		if sendErr != nil {
			t.Fatal(sendErr)
		}
		bseq += sent
		reason := rec.str("reason") + ": " + rec.str("err")
		switch reason {
		case "write failed: " + unix.EPIPE.Error(), "read failed: " + unix.ECONNRESET.Error():
		default:
			t.Fatalf("round %d: disconnect logged as %v; want a write failing with EPIPE or a read with ECONNRESET", round, rec)
		}
		reasons[reason]++
		expectKills(t, e, v.ID(1), v.ID(2))
		log.reset()
	}
	if err := receiveAll(b, toB); err != nil {
		t.Fatalf("bystander: %v", err)
	}
	s := r.Stats()
	if s.Disconnects != rounds || s.KillsSent != 2*rounds || s.Evictions != 0 || s.ProtocolErrors != 0 || s.ClientsActive != 1 {
		t.Fatalf("counters: %+v", s)
	}
	t.Logf("%d victims, disconnect reasons %v; bystander got %d frames; quarantine drops %d", rounds, reasons, len(toB), s.QuarantineDrops)
}

// TestPeerFaultResetOnRead: a client sends frames (one of them cut short)
// and closes with the relay's last frame to it unread. AF_UNIX then resets
// the relay's side: its reads return the rest of the client's bytes and
// then ECONNRESET. Every complete frame the client sent still reaches the
// guest, in order, byte for byte, before the SIGKILLs for its two sessions;
// the partial frame does not; the disconnect is logged as "read failed"
// with ECONNRESET. A client that read everything before closing is logged
// as "closed by client", without error: the reset is the unread data's
// doing.
func TestPeerFaultResetOnRead(t *testing.T) {
	e, r, log := startLogged(t, 0, nil)

	clean := e.Dial(t)
	clean.Conn.Close()
	rec := log.waitFor(t, 5*time.Second, "the clean client's disconnect", disconnectOf(clean.Slot()))
	if rec.str("reason") != "closed by client" || rec.str("err") != "" {
		t.Fatalf("clean close logged as %v", rec)
	}
	log.reset()

	v := e.Dial(t)
	openSessions(t, e, v, 1, 2)
	last := stdout(t, v.ID(1), 0, 100)
	e.Guest.Send(t, last)
	waitQueued(t, v.Conn, len(last)) // in v's socket, unread

	var burst []byte
	var want [][]byte
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		f := testFrame(rng, v.ID(1+uint32(i%2)), uint32(i), 8+rng.IntN(20000))
		want = append(want, f)
		burst = append(burst, f...)
	}
	partial := testFrame(rng, v.ID(1), 99, 5000)
	burst = append(burst, partial[:len(partial)/2]...)
	v.Send(t, burst)
	v.Conn.Close()

	for i, w := range want {
		if got := e.Guest.Next(t, 5*time.Second); !bytes.Equal(got, w) {
			m := relaytest.Decode(t, got)
			t.Fatalf("guest frame %d: %s id %d, %d bytes; want the client's frame %d (%d bytes)", i, m.TypeName, m.ID, len(got), i, len(w))
		}
	}
	expectKills(t, e, v.ID(1), v.ID(2))
	e.Guest.Quiet(t, 50*time.Millisecond) // and not the partial frame
	rec = log.waitFor(t, 5*time.Second, "the victim's disconnect", disconnectOf(v.Slot()))
	if rec.str("reason") != "read failed" || rec.str("err") != unix.ECONNRESET.Error() || rec.num("sessions_killed") != 2 {
		t.Fatalf("disconnect logged as %v; want reason \"read failed\", err %q, sessions_killed 2", rec, unix.ECONNRESET.Error())
	}
	s := r.Stats()
	if s.Disconnects != 2 || s.KillsSent != 2 || s.FramesToGuest != 2+20+2 || s.ProtocolErrors != 0 {
		t.Fatalf("counters: %+v", s)
	}
}

// TestPeerFaultFramesBeforeWriteFailure: a client sends a frame and hangs up
// while the guest's ring is full (so the relay is not reading clients) and
// the guest has output for it. The relay's write to it fails with EPIPE
// before its read would have found the frame; the frame must still reach
// the guest, as it does when the relay meets the EOF first (a client may
// send core.shutdown and hang up).
func TestPeerFaultFramesBeforeWriteFailure(t *testing.T) {
	e, r, log := startLogged(t, 1<<12, nil)
	filler, v := e.Dial(t), e.Dial(t)
	e.Guest.Pause()
	defer e.Guest.Resume()                                                 // a paused guest would hang the harness's cleanup
	fill := testFrame(rand.New(rand.NewPCG(3, 4)), filler.ID(1), 0, 3<<12) // three rings' worth
	filler.Send(t, fill)
	// Counted as it starts into Rx; three times the ring cannot go in.
	relaytest.Eventually(t, 5*time.Second, "the guest's ring to fill", func() bool { return r.Stats().FramesToGuest == 1 })

	shutdown, _ := frame.AppendMessage(nil, 0, frame.TypeShutdown, nil)
	v.Send(t, shutdown)
	v.Conn.Close()
	time.Sleep(20 * time.Millisecond) // the hang-up is seen, not acted on: Rx is full
	e.Guest.Send(t, stdout(t, v.ID(1), 0, 100))
	// Routed to v and flushed in the same pass: the write fails (EPIPE).
	relaytest.Eventually(t, 5*time.Second, "the guest frame to be routed to the victim", func() bool { return r.Stats().FramesToClient == 1 })
	time.Sleep(20 * time.Millisecond)
	e.Guest.Resume()

	if got := e.Guest.Next(t, 5*time.Second); !bytes.Equal(got, fill) {
		t.Fatalf("guest got %d bytes first, want the filler's frame", len(got))
	}
	got := e.Guest.Next(t, 5*time.Second)
	if m := relaytest.Decode(t, got); m.Type != frame.TypeShutdown {
		t.Fatalf("guest got %s, want the departed client's core.shutdown; log:\n%s", m.TypeName, log)
	}
	rec := log.waitFor(t, 5*time.Second, "the victim's disconnect", disconnectOf(v.Slot()))
	if rec.str("reason") != "write failed" || rec.str("err") != unix.EPIPE.Error() {
		t.Fatalf("disconnect logged as %v; want reason \"write failed\", err %q", rec, unix.EPIPE.Error())
	}
	if s := r.Stats(); s.Shutdowns != 1 || s.Disconnects != 1 {
		t.Fatalf("Shutdowns = %d, Disconnects = %d, want 1 and 1", s.Shutdowns, s.Disconnects)
	}
}

// waitQueued waits until at least n bytes sit unread in c's receive queue.
func waitQueued(t *testing.T, c *net.UnixConn, n int) {
	t.Helper()
	if !queued(c, n, 5*time.Second) {
		t.Fatalf("fewer than %d bytes reached the client's socket within 5s", n)
	}
}

// queued reports whether at least n bytes sit unread in c's receive queue
// within timeout.
func queued(c *net.UnixConn, n int, timeout time.Duration) bool {
	sc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	for deadline := time.Now().Add(timeout); ; time.Sleep(time.Millisecond) {
		q := 0
		sc.Control(func(fd uintptr) { q, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		if q >= n {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func (l *logCapture) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Reset()
}

// TestPeerFaultVanishing: clients vanish with data pending both ways, in a
// loop, while three checksummed streamers run through the echo guest. Each
// round: one client sends 2 MiB of frames without reading their echoes,
// then half of a 3 MiB frame, and closes (the relay holds output for it and
// a partial frame from it); one connects and closes before the relay has
// even accepted it; one closes with the handshake unread; one sends a whole
// 3 MiB frame (three times the guest's ring) and closes at once. The
// streamers must get everything back; the guest must see every complete
// frame intact and no partial one; the counters must add up; the unread
// data must show as resets in the log.
func TestPeerFaultVanishing(t *testing.T) {
	rig := newEchoRig(t, relaytest.PortRing, 1<<20, nil)
	until := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var streamed streamTotals
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := rig.Env.DialErr(5 * time.Second)
			if err != nil {
				t.Errorf("streamer %d: dial: %v", w, err)
				return
			}
			defer cl.Conn.Close()
			tot, err := streamChecked(cl, 50+uint64(w), func() bool { return time.Now().Before(until) }, 16, true)
			mu.Lock()
			streamed.add(tot)
			mu.Unlock()
			if err != nil {
				t.Errorf("streamer %d: %v", w, err)
			}
		}()
	}

	rng := rand.New(rand.NewPCG(5, 6))
	var vanished streamTotals
	rounds := 0
	// At least three rounds even on a loaded machine under -race (where a
	// round can take longer than the streamers' 2 s), within a hard stop.
	hardStop := time.Now().Add(30 * time.Second)
	for ; rounds < 12 && !t.Failed() && time.Now().Before(hardStop) &&
		(rounds < 3 || time.Until(until) > 400*time.Millisecond); rounds++ {
		// Writes pending both ways.
		x := rig.Env.Dial(t)
		for i := range 8 {
			f := testFrame(rng, x.ID(1+uint32(i)), uint32(i), 256<<10)
			x.Send(t, f)
			vanished.frames++
			vanished.bytes += uint64(len(f))
		}
		big := testFrame(rng, x.ID(9), 9, 3<<20)
		x.Send(t, big[:len(big)/2])
		waitQueued(t, x.Conn, 1)
		x.Conn.Close()

		// Gone before the relay could accept it.
		c, err := net.Dial("unix", rig.Env.Socket)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()

		// Gone with the handshake unread.
		c, err = net.Dial("unix", rig.Env.Socket)
		if err != nil {
			t.Fatal(err)
		}
		waitQueued(t, c.(*net.UnixConn), frame.LenSize+len(guestReady))
		c.Close()

		// A whole frame three times the guest's ring, then gone.
		y := rig.Env.Dial(t)
		f := testFrame(rng, y.ID(1), 0, 3<<20)
		y.Send(t, f)
		vanished.frames++
		vanished.bytes += uint64(len(f))
		y.Conn.Close()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	r := rig.R
	want := streamed.frames + vanished.frames
	settled := func() bool {
		s := r.Stats()
		return s.ClientsActive == 0 && s.FramesToGuest == want && rig.Echo.frames.Load() == want &&
			s.FramesToClient+s.NoClientDrops == want
	}
	for deadline := time.Now().Add(5 * time.Second); !settled(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("counters never settled: want %d frames (%d streamed, %d from vanishing clients); guest saw %d; relay %+v",
				want, streamed.frames, vanished.frames, rig.Echo.frames.Load(), r.Stats())
		}
	}
	s := r.Stats()
	if s.BytesToGuest != streamed.bytes+vanished.bytes || rig.Echo.bytes.Load() != s.BytesToGuest {
		t.Errorf("BytesToGuest %d, guest got %d, want %d", s.BytesToGuest, rig.Echo.bytes.Load(), streamed.bytes+vanished.bytes)
	}
	if bad := rig.Echo.bad.Load(); bad != 0 {
		t.Errorf("the guest got %d corrupted frames", bad)
	}
	if s.ProtocolErrors != 0 || s.Evictions != 0 || s.CorruptIncidents != 0 {
		t.Errorf("ProtocolErrors %d, Evictions %d, CorruptIncidents %d: want none", s.ProtocolErrors, s.Evictions, s.CorruptIncidents)
	}
	if want := uint64(3 + 4*rounds); s.ClientsAccepted != want || s.Disconnects != want {
		t.Errorf("ClientsAccepted %d, Disconnects %d, want %d each", s.ClientsAccepted, s.Disconnects, want)
	}
	reasons := map[string]int{}
	unsent := 0
	relaytest.Eventually(t, 2*time.Second, "every disconnect to be logged", func() bool {
		n := 0
		for _, rec := range rig.Log.records() {
			if rec.str("msg") == "client disconnected" {
				n++
			}
		}
		return uint64(n) == s.Disconnects
	})
	for _, rec := range rig.Log.records() {
		if rec.str("msg") != "client disconnected" {
			continue
		}
		reasons[rec.str("reason")+": "+rec.str("err")]++
		if rec.num("unsent_bytes") > 0 {
			unsent++
		}
	}
	t.Logf("%d rounds of 4 vanishing clients (%d frames, %.0f MB from them) beside %d streamed frames (%.0f MB) checked end to end; "+
		"disconnects %v, %d with output unsent; no-client drops %d",
		rounds, vanished.frames, float64(vanished.bytes)/1e6, streamed.frames, float64(streamed.bytes)/1e6, reasons, unsent, s.NoClientDrops)
	if rounds < 3 {
		t.Errorf("only %d rounds", rounds)
	}
	if n := reasons["read failed: "+unix.ECONNRESET.Error()]; n < 2*rounds {
		t.Errorf("%d disconnects on ECONNRESET, want at least %d (two clients a round close with data unread)", n, 2*rounds)
	}
	if unsent == 0 {
		t.Errorf("no client left with output unsent: the pending-write case was not exercised")
	}
}

var guestReady = guest.DefaultReady()
