package relay_test

import (
	"bytes"
	"encoding/binary"
	"flag"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/relaytest"
)

var churnFor = flag.Duration("churn", 0, "how long TestChurn runs (default 1m, 5s with -short; longer for a soak: make soak)")

func openFDs(t *testing.T) int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(es)
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestChurn: 16 clients connect, open a session, send, and leave (cleanly or
// mid-frame), in a loop, for -churn (a minute by default). The fds,
// goroutines and heap in use are measured after a warm-up of the same churn
// (so that the session table and the quarantine have reached their steady
// size) and again once every client has gone and every quarantine has
// expired: nothing may have grown, every session opened must have been
// killed and expired, and every slot is free again.
func TestChurn(t *testing.T) {
	d := *churnFor
	if d == 0 {
		d = time.Minute
		if testing.Short() {
			d = 5 * time.Second
		}
	}
	const quarantine = time.Second
	e := relaytest.Start(t, Reactor, relaytest.Config{Options: func(o *relay.Options) {
		o.QuarantineTimeout = quarantine
	}})
	r := e.Server.(interface{ Stats() relayStats })
	// Drain what reaches the guest (requests, SIGKILLs) so Rx never fills.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				e.Guest.Drain(10 * time.Millisecond)
			}
		}
	}()
	req, _ := frame.AppendMessage(nil, 0, frame.TypeExecRequest, frame.ExecRequest{Cmd: "x", Args: []string{}, Env: []string{}, Rlimits: []frame.Rlimit{}})
	var ids atomic.Uint32 // a fresh id each time: a slot's last one may still be quarantined
	round := func() {
		var wg sync.WaitGroup
		for i := range frame.MaxClients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := e.DialErr(5 * time.Second)
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				defer c.Conn.Close()
				f := bytes.Clone(req)
				binary.BigEndian.PutUint32(f[4:], c.ID(ids.Add(1)))
				if i%2 == 0 {
					f = f[:len(f)/2] // leave mid-frame
				}
				c.Conn.Write(f)
			}()
		}
		wg.Wait()
	}
	settle := func() {
		relaytest.Eventually(t, 10*time.Second, "every client gone and every quarantine expired", func() bool {
			s := r.Stats()
			return s.ClientsActive == 0 && s.SessionsActive == 0
		})
		time.Sleep(100 * time.Millisecond)
	}
	for warm := time.Now().Add(2 * quarantine); time.Now().Before(warm); {
		round()
	}
	settle()
	fds, gs, heap := openFDs(t), runtime.NumGoroutine(), heapInUse()
	s0 := r.Stats()

	deadline := time.Now().Add(d)
	rounds := 0
	for time.Now().Before(deadline) && !t.Failed() {
		round()
		rounds++
	}
	if t.Failed() {
		return
	}
	settle()
	fds2, gs2, heap2 := openFDs(t), runtime.NumGoroutine(), heapInUse()
	s := r.Stats()
	opened := s.SessionsOpened - s0.SessionsOpened
	t.Logf("%d rounds of 16 clients in %v (%d clients, %d sessions opened, killed and expired); fds %d→%d, goroutines %d→%d, heap in use %d→%d KiB",
		rounds, d, s.ClientsAccepted-s0.ClientsAccepted, opened, fds, fds2, gs, gs2, heap/1024, heap2/1024)
	if fds2 > fds {
		t.Errorf("fds grew from %d to %d", fds, fds2)
	}
	if gs2 > gs+2 {
		t.Errorf("goroutines grew from %d to %d", gs, gs2)
	}
	if heap2 > heap+4<<20 {
		t.Errorf("heap in use grew from %d to %d KiB", heap/1024, heap2/1024)
	}
	if got := s.ClientsAccepted - s0.ClientsAccepted; got != uint64(16*rounds) {
		t.Errorf("accepted %d clients, want %d", got, 16*rounds)
	}
	if kills, expired := s.KillsSent-s0.KillsSent, s.QuarantineExpired-s0.QuarantineExpired; opened == 0 || kills != opened || expired != opened {
		t.Errorf("%d sessions opened, %d killed, %d expired from quarantine: want all equal", opened, kills, expired)
	}
	if s.ProtocolErrors != 0 || s.Evictions != 0 || s.QuarantineOverflows != 0 || s.IDCollisions != 0 {
		t.Errorf("ProtocolErrors=%d Evictions=%d QuarantineOverflows=%d IDCollisions=%d, want 0",
			s.ProtocolErrors, s.Evictions, s.QuarantineOverflows, s.IDCollisions)
	}
}

// TestGuestFloodsEmptySlots: a guest sending a flood of frames for slots
// with no client costs nothing but counted drops; a connected client still
// gets its own frames, in order.
func TestGuestFloodsEmptySlots(t *testing.T) {
	e := relaytest.Start(t, Reactor, relaytest.Config{})
	c := e.Dial(t)
	junk, _ := frame.AppendMessage(nil, 9*frame.Step+1, frame.TypeExecStdout, frame.ExecStdout{Data: make([]byte, 100)})
	const n = 100000
	batch := make([]byte, 0, 100*len(junk))
	for range 100 {
		batch = append(batch, junk...)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n / 100 {
			e.Guest.Send(t, batch)
			if i%100 == 0 {
				mine, _ := frame.AppendMessage(nil, c.ID(1), frame.TypeExecStdout, frame.ExecStdout{Data: []byte{byte(i / 100)}})
				e.Guest.Send(t, mine)
			}
		}
	}()
	for i := range n / 100 / 100 {
		m := relaytest.Decode(t, c.Next(t, 10*time.Second))
		var out frame.ExecStdout
		if err := m.Into(&out); err != nil || out.Data[0] != byte(i) {
			t.Fatalf("client frame %d: %v %v", i, out.Data, err)
		}
	}
	<-done
	r := e.Server.(interface{ Stats() relayStats })
	relaytest.Eventually(t, 5*time.Second, "all junk to be dropped", func() bool { return r.Stats().NoClientDrops == n })
}

// TestSlowReaderResumes: a client that starts reading late fills its buffer
// and holds the guest stream up; as soon as it reads, the stream resumes —
// well within the grace period, without eviction, nothing lost.
func TestSlowReaderResumes(t *testing.T) {
	e := relaytest.Start(t, Reactor, relaytest.Config{Options: func(o *relay.Options) {
		o.ClientBuffer = frame.MaxFrame
		o.EvictGrace = 20 * time.Second
	}})
	c := e.Dial(t)
	big := make([]byte, 3<<20)
	const n = 6 // 18 MiB: far beyond the client's buffer and socket
	go func() {
		for i := range n {
			big[0] = byte(i)
			f, _ := frame.AppendMessage(nil, c.ID(1), frame.TypeExecStdout, frame.ExecStdout{Data: big})
			e.Guest.Send(t, f)
		}
	}()
	time.Sleep(500 * time.Millisecond) // the relay stalls on the full buffer
	for i := range n {
		m := relaytest.Decode(t, c.Next(t, 5*time.Second))
		var out frame.ExecStdout
		if err := m.Into(&out); err != nil || len(out.Data) != len(big) || out.Data[0] != byte(i) {
			t.Fatalf("frame %d: %d bytes, err %v", i, len(out.Data), err)
		}
	}
	if s := e.Server.(interface{ Stats() relayStats }).Stats(); s.Evictions != 0 || s.GuestStallNanos == 0 {
		t.Fatalf("Evictions=%d GuestStallNanos=%d, want 0 and > 0", s.Evictions, s.GuestStallNanos)
	}
}

// TestMaxFrameInPieces: a client frame of the maximum size whose last bytes
// arrive late (so that a read ends within its last 64 KiB) is forwarded
// whole. The relay once asked its input buffer for a fixed 64 KiB of room
// there, beyond the buffer's bound, and disconnected the client for an
// "input buffer overrun".
func TestMaxFrameInPieces(t *testing.T) {
	e := relaytest.Start(t, Reactor, relaytest.Config{})
	c := e.Dial(t)
	f := frame.AppendFrame(nil, c.ID(1), 0, make([]byte, frame.MaxLen-5))
	for _, tail := range []int{1000, 1, 64<<10 - 1} {
		c.Send(t, f[:len(f)-tail])
		time.Sleep(50 * time.Millisecond) // the relay reads what there is
		c.Send(t, f[len(f)-tail:])
		if got := e.Guest.Next(t, 10*time.Second); len(got) != len(f) {
			t.Fatalf("tail %d: guest got %d bytes, want %d", tail, len(got), len(f))
		}
	}
	if s := e.Server.(interface{ Stats() relayStats }).Stats(); s.ProtocolErrors != 0 || s.Disconnects != 0 {
		t.Fatalf("ProtocolErrors=%d Disconnects=%d, want 0", s.ProtocolErrors, s.Disconnects)
	}
}

// TestQuarantineBounded: clients that keep leaving with sessions open cannot
// grow the quarantine past MaxClients × MaxSessions: once a slot holds
// MaxSessions sessions of departed clients, a new session start in it is
// answered with core.exec.failed (and counted) instead of releasing a
// quarantined session early, which would let its late output reach the new
// client. When the guest ends those sessions, the slot takes starts again.
func TestQuarantineBounded(t *testing.T) {
	const maxSessions, clients = 2, 40
	e := relaytest.Start(t, Reactor, relaytest.Config{Options: func(o *relay.Options) {
		o.MaxSessions = maxSessions
	}})
	req := func(id uint32) []byte {
		b, _ := frame.AppendMessage(nil, id, frame.TypeExecRequest, frame.ExecRequest{Cmd: "x", Args: []string{}, Env: []string{}, Rlimits: []frame.Rlimit{}})
		return b
	}
	r := e.Server.(interface{ Stats() relayStats })
	var quarantined []uint32
	for i := range uint32(clients) {
		c, err := e.DialErr(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		full := i >= frame.MaxClients // every slot holds maxSessions departed sessions by now
		for j := range uint32(maxSessions) {
			id := c.ID(i*maxSessions + j + 1) // ids no earlier client of the slot used
			c.Send(t, req(id))
			if full {
				m := relaytest.Decode(t, c.Next(t, 5*time.Second))
				if m.ID != id || m.Type != frame.TypeExecFailed {
					t.Fatalf("client %d: got id %d %s, want core.exec.failed for %d", i, m.ID, m.TypeName, id)
				}
			} else {
				quarantined = append(quarantined, id)
			}
		}
		c.Conn.Close()
		e.Guest.Drain(5 * time.Millisecond)
		want := uint64(min(i+1, frame.MaxClients)) * maxSessions
		relaytest.Eventually(t, 5*time.Second, "the client's sessions to be killed", func() bool {
			return r.Stats().KillsSent == want
		})
	}
	const limit = frame.MaxClients * maxSessions
	s := r.Stats()
	if s.SessionsActive != limit || s.QuarantineOverflows != (clients-frame.MaxClients)*maxSessions || s.IDCollisions != 0 {
		t.Fatalf("SessionsActive=%d QuarantineOverflows=%d IDCollisions=%d, want %d, %d, 0",
			s.SessionsActive, s.QuarantineOverflows, s.IDCollisions, limit, (clients-frame.MaxClients)*maxSessions)
	}

	// The guest ends every quarantined session: the slots are usable again.
	for _, id := range quarantined {
		e.Guest.SendMsg(t, id, frame.TypeExecExited, frame.ExecExited{Code: 137})
	}
	relaytest.Eventually(t, 5*time.Second, "the quarantine to empty", func() bool {
		return r.Stats().SessionsActive == 0
	})
	c := e.Dial(t)
	id := c.ID(1000)
	c.Send(t, req(id))
	if got := relaytest.Decode(t, e.Guest.Next(t, 5*time.Second)); got.ID != id || got.Type != frame.TypeExecRequest {
		t.Fatalf("guest got id %d %s, want the exec.request %d", got.ID, got.TypeName, id)
	}
}

// TestMemoryBoundDefaults pins the figure relay/doc.go states for the
// defaults, so that a change of a default or of the formula updates the doc.
func TestMemoryBoundDefaults(t *testing.T) {
	for _, c := range []struct {
		o    relay.Options
		want float64
	}{{relay.Options{}, 159.8}, {relay.Options{Handshake: relay.Handshake04}, 145.8}} {
		if got := float64(c.o.MemoryBound()) / (1 << 20); got < c.want-0.05 || got > c.want+0.05 {
			t.Fatalf("MemoryBound with the defaults (handshake %v) is %.2f MiB; doc.go says %.1f MiB", c.o.Handshake, got, c.want)
		}
	}
	// The budgets, not ClientBuffer, bound what clients' buffers hold.
	base := relay.Options{}.MemoryBound()
	if d := (relay.Options{ClientBuffer: 16 << 20, OutputBudget: 64 << 20}).MemoryBound() - base; d != 0 {
		t.Fatalf("doubling ClientBuffer within the same budget adds %d bytes, want 0", d)
	}
	if d := (relay.Options{OutputBudget: 128 << 20}).MemoryBound() - base; d != 64<<20 {
		t.Fatalf("doubling OutputBudget adds %d bytes, want 64 MiB", d)
	}
}

// TestNoInjectionIntoDepartedSession: a client that inherits a slot whose
// previous client left a session running (quarantined, SIGKILLed, not yet
// ended by the guest) cannot send stdin, signals or a TERMINAL into that
// session: the frame is refused like a foreign id, the client disconnected,
// and nothing of it reaches the guest.
func TestNoInjectionIntoDepartedSession(t *testing.T) {
	e := relaytest.Start(t, Reactor, relaytest.Config{})
	r := e.Server.(interface{ Stats() relayStats })
	clients := make([]*relaytest.Client, frame.MaxClients)
	for i := range clients {
		clients[i] = e.Dial(t)
	}
	victim := clients[3]
	id := victim.ID(7)
	victim.SendMsg(t, id, frame.TypeExecRequest, frame.ExecRequest{Cmd: "sh", Args: []string{}, Env: []string{}, Rlimits: []frame.Rlimit{}})
	if m := relaytest.Decode(t, e.Guest.Next(t, 5*time.Second)); m.ID != id {
		t.Fatalf("guest got id %d, want the victim's request %d", m.ID, id)
	}
	victim.Conn.Close()
	if m := relaytest.Decode(t, e.Guest.Next(t, 5*time.Second)); m.ID != id || m.Type != frame.TypeExecSignal {
		t.Fatalf("guest got id %d %s, want the SIGKILL for %d", m.ID, m.TypeName, id)
	}
	heir := e.Dial(t) // the only free slot is the victim's
	if heir.Slot() != victim.Slot() {
		t.Fatalf("heir got slot %d, want %d", heir.Slot(), victim.Slot())
	}
	heir.SendMsg(t, id, frame.TypeExecStdin, frame.ExecStdin{Data: []byte("rm -rf /\n")})
	heir.Closed(t, 5*time.Second)
	e.Guest.Quiet(t, 200*time.Millisecond)
	if s := r.Stats(); s.ProtocolErrors != 1 {
		t.Fatalf("ProtocolErrors=%d, want 1", s.ProtocolErrors)
	}
}
