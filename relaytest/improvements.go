package relaytest

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/relay"
)

// testNoDrop fills a 4 KiB Rx ring from two clients while the guest is not
// reading, far longer than 0.4.4's 50 ms, and checks that every frame arrives
// intact, in order per client, and that the two clients take turns.
func testNoDrop(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{Ring: 4096})
	c0, c1 := e.Dial(t), e.Dial(t)
	e.Guest.Pause()
	const n = 400 // 400 × ~1 KiB per client: far beyond the ring and both sockets' buffers
	var wg sync.WaitGroup
	for _, c := range []*Client{c0, c1} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range uint32(n) {
				data := bytes.Repeat([]byte{byte(i)}, 1000)
				binary.BigEndian.PutUint32(data, i)
				f, _ := frame.AppendMessage(nil, c.ID(1), frame.TypeExecStdin, frame.ExecStdin{Data: data})
				if _, err := c.Conn.Write(f); err != nil {
					t.Errorf("client %d write: %v", c.Slot(), err)
					return
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if s := stats(t, e); s.RingFullNanos == 0 && s.FramesToGuest >= 2*n {
		t.Fatalf("ring never filled: the test did not exercise back-pressure")
	}
	e.Guest.Resume()
	next := map[uint32]uint32{}
	var order []uint32
	for range 2 * n {
		m := Decode(t, e.Guest.Next(t, 10*time.Second))
		var in frame.ExecStdin
		if err := m.Into(&in); err != nil {
			t.Fatal(err)
		}
		seq := binary.BigEndian.Uint32(in.Data)
		if seq != next[m.ID] || len(in.Data) != 1000 || in.Data[999] != byte(seq) {
			t.Fatalf("client id %d: frame %d arrived, want %d (or corrupted)", m.ID, seq, next[m.ID])
		}
		next[m.ID]++
		order = append(order, m.ID)
	}
	wg.Wait()
	// Round-robin: both clients progress in the first half of the stream.
	first := map[uint32]int{}
	for _, id := range order[:n] {
		first[id]++
	}
	if first[c0.ID(1)] < n/5 || first[c1.ID(1)] < n/5 {
		t.Fatalf("unfair resume: first %d frames split %v", n, first)
	}
	if s := stats(t, e); s.RingFullNanos == 0 {
		t.Fatalf("RingFullNanos = 0 after a full ring")
	}
}

// testEvict has a client that never reads: once its buffer is full it may
// hold the guest stream up for the grace period only, then it is evicted
// (its session SIGKILLed) and the other client gets everything.
func testEvict(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{Options: func(o *relay.Options) {
		o.EvictGrace = 300 * time.Millisecond
		o.ClientBuffer = frame.MaxFrame
	}})
	slow, fast := e.Dial(t), e.Dial(t)
	slow.Conn.SetReadBuffer(4096)
	slow.Send(t, execReq(t, slow.ID(1), "yes", false))
	e.Guest.Next(t, wait)
	chunk := bytes.Repeat([]byte("y"), 60<<10)
	const n = 200 // 12 MiB to the slow client: more than its buffer and socket
	got := make(chan int, 1)
	go func() {
		i := 0
		for ; i < n; i++ {
			f, err := fast.Recv(10 * time.Second)
			if err != nil {
				break
			}
			m, err := frame.Decode(f)
			var out frame.ExecStdout
			if err != nil || m.Into(&out) != nil || binary.BigEndian.Uint32(out.Data) != uint32(i) {
				break
			}
		}
		got <- i
	}()
	start := time.Now()
	for i := range uint32(n) {
		e.Guest.Send(t, stdout(t, slow.ID(1), string(chunk)))
		d := bytes.Clone(chunk[:64])
		binary.BigEndian.PutUint32(d, i)
		e.Guest.Send(t, stdout(t, fast.ID(1), string(d)))
	}
	if k := <-got; k != n {
		t.Fatalf("fast client received %d of %d frames in order", k, n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("guest stream held up %v by a slow client (grace 300ms)", d)
	}
	kill := e.Guest.Next(t, wait)
	sameBytes(t, "SIGKILL for the evicted client's session", kill, msg(t, slow.ID(1), frame.TypeExecSignal, frame.ExecSignal{Signal: 9}))
	if s := stats(t, e); s.Evictions != 1 {
		t.Fatalf("Evictions = %d, want 1", s.Evictions)
	}
	slow.Closed(t, wait)
}

func testForeignID(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{})
	bad, victim := e.Dial(t), e.Dial(t)
	victim.Send(t, execReq(t, victim.ID(1), "cat", false))
	e.Guest.Next(t, wait)
	// Inject stdin and a signal into the victim's session, and id 0 without
	// SHUTDOWN: none of it may reach the guest.
	for _, f := range [][]byte{
		msg(t, victim.ID(1), frame.TypeExecStdin, frame.ExecStdin{Data: []byte("rm -rf /\n")}),
		msg(t, victim.ID(1), frame.TypeExecSignal, frame.ExecSignal{Signal: 9}),
		msg(t, 0, frame.TypeExecStdin, frame.ExecStdin{Data: []byte("x")}),
		msg(t, bad.Offset, frame.TypeExecStdin, frame.ExecStdin{Data: []byte("x")}), // k·STEP itself is not the client's
	} {
		c, err := e.DialErr(wait)
		if err != nil {
			t.Fatal(err)
		}
		c.Send(t, f)
		c.Closed(t, wait)
	}
	bad.Send(t, msg(t, victim.ID(1), frame.TypeExecStdin, frame.ExecStdin{Data: []byte("x")}))
	bad.Closed(t, wait)
	e.Guest.Quiet(t, 100*time.Millisecond)
	// The victim is untouched both ways.
	in := msg(t, victim.ID(1), frame.TypeExecStdin, frame.ExecStdin{Data: []byte("mine")})
	victim.Send(t, in)
	sameBytes(t, "victim's stdin", e.Guest.Next(t, wait), in)
	out := stdout(t, victim.ID(1), "still mine")
	e.Guest.Send(t, out)
	sameBytes(t, "victim's stdout", victim.Next(t, wait), out)
	if s := stats(t, e); s.ProtocolErrors != 5 {
		t.Fatalf("ProtocolErrors = %d, want 5", s.ProtocolErrors)
	}
}

func testMalformed(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{})
	other := e.Dial(t)
	for _, hdr := range [][]byte{
		{0x00, 0x40, 0x00, 0x01, 0, 0, 0, 1, 0}, // 4 MiB + 1
		{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0},
		{0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1}, // under 5
	} {
		c := e.Dial(t)
		ok := msg(t, c.ID(1), frame.TypeExecStdin, frame.ExecStdin{Data: []byte("before")})
		c.Send(t, append(bytes.Clone(ok), hdr...))
		sameBytes(t, "frame before the malformed one", e.Guest.Next(t, wait), ok)
		c.Closed(t, wait)
	}
	in := msg(t, other.ID(1), frame.TypeExecStdin, frame.ExecStdin{Data: []byte("fine")})
	other.Send(t, in)
	sameBytes(t, "bystander's frame", e.Guest.Next(t, wait), in)
}

func testQuarantine(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{})
	old := e.Dial(t)
	id := old.ID(1)
	old.Send(t, execReq(t, id, "sleep", false))
	e.Guest.Next(t, wait)
	old.Conn.Close()
	sameBytes(t, "SIGKILL", e.Guest.Next(t, wait), msg(t, id, frame.TypeExecSignal, frame.ExecSignal{Signal: 9}))

	// Slot 0 holds a quarantined session: it is handed out last.
	var others []*Client
	for want := uint32(1); want < uint32(e.Slots()); want++ {
		c := e.Dial(t)
		if c.Offset != want*e.Step() {
			t.Fatalf("client got offset %d, want %d (slot 0 is quarantined)", c.Offset, want*e.Step())
		}
		others = append(others, c)
	}
	heir := e.Dial(t)
	if heir.Offset != 0 {
		t.Fatalf("last free slot not handed out: offset %d", heir.Offset)
	}
	// Late output of the old session is not delivered to the heir.
	e.Guest.Send(t, stdout(t, id, "old secret"))
	// The heir's own session start under the same id is refused, not mixed.
	heir.Send(t, execReq(t, id, "ls", false))
	m := Decode(t, heir.Next(t, wait))
	if m.Type != frame.TypeExecFailed || m.Flags&frame.FlagTerminal == 0 {
		t.Fatalf("colliding session start answered with %s flags %#x, want core.exec.failed TERMINAL", m.TypeName, m.Flags)
	}
	e.Guest.Quiet(t, 50*time.Millisecond)
	// The guest ends the old session: quarantine over, the id is the heir's.
	e.Guest.Send(t, msg(t, id, frame.TypeExecExited, frame.ExecExited{Code: 137}))
	Eventually(t, wait, "the guest's exit to end the quarantine", func() bool { return stats(t, e).SessionsActive == 0 })
	heir.Send(t, execReq(t, id, "ls", false))
	e.Guest.Next(t, wait)
	mine := stdout(t, id, "heir's own")
	e.Guest.Send(t, mine)
	sameBytes(t, "heir's frame", heir.Next(t, wait), mine)
	s := stats(t, e)
	if s.QuarantineDrops != 2 || s.IDCollisions != 1 {
		t.Fatalf("QuarantineDrops=%d IDCollisions=%d, want 2 and 1", s.QuarantineDrops, s.IDCollisions)
	}
	_ = others
}

func testAcceptQueue(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{Options: func(o *relay.Options) {
		o.AcceptWait = 2 * time.Second
		o.AcceptQueue = 1
	}})
	var cs []*Client
	for range e.Slots() {
		cs = append(cs, e.Dial(t))
	}
	type result struct {
		c   *Client
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := e.DialErr(wait)
		res <- result{c, err}
	}()
	Eventually(t, wait, "the client past the slots to be queued", func() bool { return stats(t, e).AcceptQueued == 1 })
	// The queue holds one: an 18th is closed at once.
	c18, err := e.DialErr(wait)
	if err == nil {
		c18.Conn.Close()
		t.Fatal("18th client got a slot")
	}
	select {
	case r := <-res:
		t.Fatalf("17th client was answered while all slots were busy: %v", r.err)
	case <-time.After(100 * time.Millisecond):
	}
	cs[5].Conn.Close()
	r := <-res
	if r.err != nil {
		t.Fatalf("17th client: %v", r.err)
	}
	defer r.c.Conn.Close()
	if r.c.Offset != 5*e.Step() {
		t.Fatalf("17th client got offset %d, want slot 5's", r.c.Offset)
	}
	sameBytes(t, "ready", r.c.Ready, e.Ready)
	// A waiter that waits too long is closed.
	go func() {
		c, err := e.DialErr(wait)
		res <- result{c, err}
	}()
	start := time.Now()
	if r := <-res; r.err == nil {
		t.Fatal("waiter got a slot although none freed")
	}
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Fatalf("waiter closed after %v, before AcceptWait", d)
	}
	s := stats(t, e)
	if s.AcceptOverflows != 1 || s.AcceptTimeouts != 1 {
		t.Fatalf("AcceptOverflows=%d AcceptTimeouts=%d, want 1 and 1", s.AcceptOverflows, s.AcceptTimeouts)
	}
}

func testCorrupt(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{})
	c := e.Dial(t)
	good := stdout(t, c.ID(1), "good")
	var junk []byte
	junk = append(junk, bytes.Repeat([]byte{0xff}, 1000)...)         // length too large
	junk = append(junk, 0, 0, 0, 2, 0xaa, 0xbb)                      // too short...
	junk = append(junk, bytes.Repeat([]byte{0xfe}, 3<<20)...)        // and a lot more garbage
	e.Guest.Send(t, append([]byte{0x7f, 0xff, 0xff, 0xff}, junk...)) // ends straight before good
	e.Guest.Send(t, good)
	sameBytes(t, "first good frame after corruption", c.Next(t, 10*time.Second), good)
	e.Guest.Send(t, []byte{0, 0, 0, 1, 0}) // too short, then a frame split across writes
	e.Guest.Send(t, good[:3])
	e.Guest.Send(t, good[3:])
	sameBytes(t, "good frame after the second incident", c.Next(t, wait), good)
	s := stats(t, e)
	if s.CorruptIncidents != 2 || s.CorruptBytes != uint64(4+len(junk)+5) {
		t.Fatalf("CorruptIncidents=%d CorruptBytes=%d, want 2 and %d", s.CorruptIncidents, s.CorruptBytes, 4+len(junk)+5)
	}
}

func testSocketMode(t *testing.T, impl Impl) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	e := Start(t, impl, Config{})
	fi, err := os.Stat(e.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode %v, want 0600 socket", fi.Mode())
	}
	open := t.TempDir()
	os.Chmod(open, 0o777)
	g := NewGuest(t, impl.Port, 0)
	o := relay.Options{Socket: filepath.Join(open, "agent.sock")}
	g.SetOptions(&o)
	if _, err := impl.New(o); err == nil {
		t.Fatal("relay accepted a socket directory writable by others")
	}
}
