package baseline

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/relaytest"
	"github.com/agentrelay/agentrelay/ring"
)

const wait = 5 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func start(t *testing.T, cfg relaytest.Config) (*relaytest.Env, *Relay) {
	t.Helper()
	tweak := cfg.Options
	cfg.Options = func(o *relay.Options) {
		o.Logger = quiet
		if tweak != nil {
			tweak(o)
		}
	}
	e := relaytest.Start(t, Goroutine, cfg)
	return e, e.Server.(*Relay)
}

func stdin(t testing.TB, id uint32, data []byte) []byte {
	t.Helper()
	f, err := frame.AppendMessage(nil, id, frame.TypeExecStdin, frame.ExecStdin{Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func seqOf(t testing.TB, raw []byte) uint32 {
	t.Helper()
	m := relaytest.Decode(t, raw)
	var in frame.ExecStdin
	if err := m.Into(&in); err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint32(in.Data)
}

// The original's data loss, kept: with the guest not reading, a frame that
// finds the Rx ring full is retried for ~50 ms and dropped; the frames
// before it and after it arrive whole.
func TestDropsWhenRxFull(t *testing.T) {
	e, r := start(t, relaytest.Config{Ring: 4096})
	c := e.Dial(t)
	e.Guest.Pause()
	time.Sleep(20 * time.Millisecond) // a read in flight ends
	data := func(i uint32) []byte {
		d := bytes.Repeat([]byte{byte(i)}, 900)
		binary.BigEndian.PutUint32(d, i)
		return d
	}
	for i := range uint32(6) { // 4 × ~930 bytes fit in 4 KiB, 2 do not
		c.Send(t, stdin(t, c.ID(1), data(i)))
	}
	began := time.Now()
	relaytest.Eventually(t, wait, "two frames dropped", func() bool {
		n, _ := r.DroppedToGuest()
		return n == 2
	})
	if d := time.Since(began); d < 80*time.Millisecond {
		t.Fatalf("two frames dropped after %v, want about 2 × 50 ms of retries", d)
	}
	e.Guest.Resume()
	c.Send(t, stdin(t, c.ID(1), data(6)))
	for _, want := range []uint32{0, 1, 2, 3, 6} {
		if got := seqOf(t, e.Guest.Next(t, wait)); got != want {
			t.Fatalf("guest got frame %d, want %d", got, want)
		}
	}
	e.Guest.Quiet(t, 100*time.Millisecond)
	s := r.Stats()
	if s.FramesToGuest != 5 || s.RingFullNanos < uint64(80*time.Millisecond) {
		t.Fatalf("FramesToGuest %d RingFullNanos %v", s.FramesToGuest, time.Duration(s.RingFullNanos))
	}
	if _, b := r.DroppedToGuest(); b != 2*uint64(len(stdin(t, c.ID(1), data(4)))) {
		t.Fatalf("dropped bytes %d", b)
	}
}

// A frame larger than the whole Rx ring is written as the guest drains it.
func TestFrameLargerThanRx(t *testing.T) {
	e, r := start(t, relaytest.Config{Ring: 4096})
	c := e.Dial(t)
	big := stdin(t, c.ID(1), bytes.Repeat([]byte("b"), 50000))
	c.Send(t, big)
	if got := e.Guest.Next(t, wait); !bytes.Equal(got, big) {
		t.Fatal("big frame corrupted")
	}
	if n, _ := r.DroppedToGuest(); n != 0 {
		t.Fatalf("%d frames dropped", n)
	}
}

// The original's head-of-line blocking, kept: a client that does not read
// holds up the guest stream for every other client until it reads.
func TestSlowClientStallsOthers(t *testing.T) {
	e, r := start(t, relaytest.Config{})
	slow, fast := e.Dial(t), e.Dial(t)
	const n = 4096 // × 1 KiB: far more than a socket buffer and 64 queued frames
	chunk := bytes.Repeat([]byte("s"), 1000)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for range n {
			e.Guest.Send(t, testFrame(t, slow.ID(1), string(chunk)))
		}
		e.Guest.Send(t, testFrame(t, fast.ID(1), "me too"))
	}()
	relaytest.Eventually(t, wait, "the slow client's channel to fill", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.clients[uint32(slow.Slot())].out) == clientQueue
	})
	if f, err := fast.Recv(300 * time.Millisecond); err == nil {
		t.Fatalf("the fast client got %x while the slow one held the stream", f)
	}
	for i := range n {
		if _, err := slow.Recv(wait); err != nil {
			t.Fatalf("slow client frame %d: %v", i, err)
		}
	}
	if m := relaytest.Decode(t, fast.Next(t, wait)); m.ID != fast.ID(1) {
		t.Fatalf("fast client got id %d", m.ID)
	}
	<-sent
	if s := r.Stats(); s.GuestStallNanos < uint64(250*time.Millisecond) || s.FramesToClient != n+1 {
		t.Fatalf("GuestStallNanos %v FramesToClient %d", time.Duration(s.GuestStallNanos), s.FramesToClient)
	}
}

// A 17th client is closed before any handshake; the slot table is not
// touched, so the next client after a departure gets the freed slot.
func TestSeventeenthClientClosed(t *testing.T) {
	e, r := start(t, relaytest.Config{})
	var cs []*relaytest.Client
	for range frame.MaxClients {
		cs = append(cs, e.Dial(t))
	}
	conn, err := net.Dial("unix", e.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(wait))
	if n, err := conn.Read(make([]byte, 64)); !errors.Is(err, io.EOF) {
		t.Fatalf("17th client read %d bytes, %v; want EOF", n, err)
	}
	if s := r.Stats(); s.AcceptOverflows != 1 || s.ClientsAccepted != 16 || s.ClientsActive != 16 {
		t.Fatalf("stats %+v", s)
	}
	cs[5].Conn.Close()
	relaytest.Eventually(t, wait, "slot 5 free", func() bool { return r.Stats().ClientsActive == 15 })
	relaytest.Eventually(t, wait, "slot 5 handed out", func() bool {
		c, err := e.DialErr(wait)
		if err != nil {
			return false // the slot is freed after the table entry: closed, try again
		}
		defer c.Conn.Close()
		return c.Slot() == 5
	})
}

// 0.4.4 forwards frames under any id and tracks their sessions anyway.
func TestForeignIDsForwarded(t *testing.T) {
	e, r := start(t, relaytest.Config{})
	c0, c1 := e.Dial(t), e.Dial(t)
	req, err := frame.AppendMessage(nil, c1.ID(5), frame.TypeExecRequest, frame.ExecRequest{Cmd: "sh"})
	if err != nil {
		t.Fatal(err)
	}
	c0.Send(t, req)
	if got := e.Guest.Next(t, wait); !bytes.Equal(got, req) {
		t.Fatal("foreign frame not forwarded as is")
	}
	c0.Conn.Close()
	kill := e.Guest.Next(t, wait)
	if m := relaytest.Decode(t, kill); m.ID != c1.ID(5) || m.Type != frame.TypeExecSignal {
		t.Fatalf("after disconnect: id %d %s", m.ID, m.TypeName)
	}
	relaytest.Eventually(t, wait, "KillsSent", func() bool { return r.Stats().KillsSent == 1 })
}

// Corrupt guest framing as in 0.4.4: too large clears the buffer (the good
// frame behind it in the same batch is lost); too short ends extraction
// until the guest writes again.
func TestCorruptGuestFraming(t *testing.T) {
	e, r := start(t, relaytest.Config{})
	c := e.Dial(t)
	lost, kept, next := testFrame(t, c.ID(1), "lost"), testFrame(t, c.ID(1), "kept"), testFrame(t, c.ID(1), "next")

	e.Guest.Send(t, append(badLen(frame.MaxLen+1, 0), lost...))
	// The clear takes whatever is buffered: send the next frame only once
	// the first batch has been dealt with.
	relaytest.Eventually(t, wait, "the clear", func() bool { return r.Stats().CorruptIncidents == 1 })
	e.Guest.Send(t, kept)
	if got := c.Next(t, wait); !bytes.Equal(got, kept) {
		t.Fatalf("after a too-large len: %x", got)
	}

	e.Guest.Send(t, append(badLen(1, 1), kept...))
	if f, err := c.Recv(150 * time.Millisecond); err == nil {
		t.Fatalf("frame behind a too-short one delivered in the same batch: %x", f)
	}
	e.Guest.Send(t, next)
	for _, want := range [][]byte{kept, next} {
		if got := c.Next(t, wait); !bytes.Equal(got, want) {
			t.Fatalf("got %x, want %x", got, want)
		}
	}
	if s := r.Stats(); s.CorruptIncidents != 2 {
		t.Fatalf("CorruptIncidents %d", s.CorruptIncidents)
	}
}

// Without an exec.log writer, exec requests are still decoded and
// registered, and nothing removes them: the original's registry leak.
func TestRegistryWithoutExecLog(t *testing.T) {
	e, r := start(t, relaytest.Config{})
	c := e.Dial(t)
	for i := range uint32(3) {
		req, _ := frame.AppendMessage(nil, c.ID(1+i), frame.TypeExecRequest, frame.ExecRequest{Cmd: "true", TTY: i == 1})
		c.Send(t, req)
		e.Guest.Next(t, wait)
		e.Guest.Send(t, mustMsg(t, c.ID(1+i), frame.TypeExecExited, frame.ExecExited{}))
		c.Next(t, wait)
	}
	r.regMu.Lock()
	defer r.regMu.Unlock()
	if len(r.registry) != 3 || r.registry[c.ID(2)] != (sessionInfo{session: 2, tty: true}) {
		t.Fatalf("registry %+v", r.registry)
	}
}

func mustMsg(t testing.TB, id uint32, typ frame.Type, p any) []byte {
	t.Helper()
	f, err := frame.AppendMessage(nil, id, typ, p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestStatsCount(t *testing.T) {
	e, r := start(t, relaytest.Config{})
	c := e.Dial(t)
	req := mustMsg(t, c.ID(1), frame.TypeExecRequest, frame.ExecRequest{Cmd: "sleep"})
	c.Send(t, req)
	e.Guest.Next(t, wait)
	out := testFrame(t, c.ID(1), "x")
	e.Guest.Send(t, out)
	c.Next(t, wait)
	e.Guest.Send(t, testFrame(t, 9*frame.Step, "nobody"))
	relaytest.Eventually(t, wait, "no-client drop", func() bool { return r.Stats().NoClientDrops == 1 })
	want := relay.Stats{
		FramesToGuest: 1, BytesToGuest: uint64(len(req)),
		FramesToClient: 1, BytesToClient: uint64(len(out)),
		ClientsAccepted: 1, ClientsActive: 1,
		SessionsOpened: 1, SessionsActive: 1, NoClientDrops: 1,
	}
	// The guest may see a frame a moment before the writer counts it.
	deadline := time.Now().Add(wait)
	for s := r.Stats(); s != want; s = r.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats\n got %+v\nwant %+v", s, want)
		}
		time.Sleep(time.Millisecond)
	}
	c.Conn.Close()
	e.Guest.Next(t, wait) // the SIGKILL
	relaytest.Eventually(t, wait, "disconnect counted", func() bool {
		s := r.Stats()
		return s.Disconnects == 1 && s.ClientsActive == 0 && s.SessionsActive == 0 && s.KillsSent == 1 && s.FramesToGuest == 2
	})
}

func TestWaitReady(t *testing.T) {
	t.Run("ContextCancelled", func(t *testing.T) {
		_, r := start(t, relaytest.Config{NoReady: true, Options: func(o *relay.Options) { o.ReadyTimeout = time.Minute }})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		began := time.Now()
		err := r.WaitReady(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(began) > 3*time.Second {
			t.Fatalf("WaitReady = %v after %v", err, time.Since(began))
		}
	})
	t.Run("GuestEndsFirst", func(t *testing.T) {
		e, r := start(t, relaytest.Config{NoReady: true})
		e.Guest.Console.Backend().CloseWrite()
		if err := r.WaitReady(t.Context()); err == nil || !strings.Contains(err.Error(), "ended before core.ready") {
			t.Fatalf("WaitReady = %v", err)
		}
	})
	t.Run("UndecodableFrameFails", func(t *testing.T) {
		// A well-framed body that is not CBOR: the original's wait_ready
		// returns the decode error.
		junk := binary.BigEndian.AppendUint32(nil, 8)
		junk = append(junk, 0, 0, 0, 1, 0, 0xff, 0xff, 0xff)
		_, r := start(t, relaytest.Config{NoReady: true, PreReady: [][]byte{junk}})
		if err := r.WaitReady(t.Context()); err == nil || !strings.Contains(err.Error(), "decode") {
			t.Fatalf("WaitReady = %v", err)
		}
	})
	t.Run("RunBeforeReady", func(t *testing.T) {
		_, r := start(t, relaytest.Config{NoReady: true})
		if err := r.Run(t.Context()); err == nil {
			t.Fatal("Run before WaitReady succeeded")
		}
	})
}

func TestRunTwice(t *testing.T) {
	e, r := start(t, relaytest.Config{})
	e.Dial(t)
	if err := r.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("second Run = %v", err)
	}
}

// Stop before Run: Run returns nil at once and cleans up.
func TestStopBeforeRun(t *testing.T) {
	c, err := ring.NewConsole(0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sock := filepath.Join(t.TempDir(), "sub", "agent.sock")
	r, err := New(relay.Options{Socket: sock, Console: c, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	c.Backend().Write(relaytest.ReadyFrame(t))
	if err := r.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	if err := r.Run(context.Background()); err != nil {
		t.Fatalf("Run after Stop = %v", err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
}

// A stale socket file is replaced, as the original does.
func TestStaleSocketReplaced(t *testing.T) {
	c, err := ring.NewConsole(0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	if err := os.WriteFile(sock, []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := New(relay.Options{Socket: sock, Console: c, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer r.ln.Close()
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket not bound over the stale file: %v %v", fi, err)
	}
}

// Run leaves nothing behind: with 16 clients (and a 17th) coming, talking and
// going, every goroutine it started has ended when it returns, whether
// stopped or ended by the guest.
func TestNoGoroutineLeak(t *testing.T) {
	for _, how := range []string{"stop", "guest-end", "ctx"} {
		t.Run(how, func(t *testing.T) { leakRun(t, how) })
	}
}

func leakRun(t *testing.T, how string) {
	c, err := ring.NewConsole(0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := c.Backend()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	before := runtime.NumGoroutine()

	r, err := New(relay.Options{Socket: sock, Console: c, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	b.Write(relaytest.ReadyFrame(t))
	if err := r.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(ctx) }()

	e := &relaytest.Env{Socket: sock}
	var cs []*relaytest.Client
	for i := range frame.MaxClients {
		cl, err := e.DialErr(wait)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, cl)
		cl.Send(t, mustMsg(t, cl.ID(1), frame.TypeExecRequest, frame.ExecRequest{Cmd: "sleep"}))
		b.Write(testFrame(t, cl.ID(1), "hi"))
		if _, err := cl.Recv(wait); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	if x, err := net.Dial("unix", sock); err == nil { // the 17th
		x.Read(make([]byte, 1))
		x.Close()
	}
	// Half of them leave (their sessions are SIGKILLed); the rest stay
	// until the end, one of them with frames queued that it never reads.
	for _, cl := range cs[:8] {
		cl.Conn.Close()
	}
	relaytest.Eventually(t, wait, "8 departures", func() bool { return r.Stats().Disconnects == 8 })
	for range 300 {
		b.Write(testFrame(t, cs[8].ID(1), strings.Repeat("q", 1000)))
	}
	time.Sleep(50 * time.Millisecond)

	switch how {
	case "stop":
		r.Stop()
	case "ctx":
		cancel()
	case "guest-end":
		b.CloseWrite()
	}
	// The client that never reads keeps its writer in a write until the
	// flush deadline; read it so Run returns promptly.
	go io.Copy(io.Discard, cs[8].Conn) // ends at the relay's close
	select {
	case err := <-runErr:
		if how == "guest-end" && !errors.Is(err, relay.ErrGuestClosed) || how != "guest-end" && err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(2 * drainTimeout):
		t.Fatal("Run did not return")
	}
	for _, cl := range cs[9:] {
		cl.Conn.SetReadDeadline(time.Now().Add(wait))
		if _, err := io.Copy(io.Discard, cl.Conn); err != nil {
			t.Fatalf("client %d not closed: %v", cl.Slot(), err)
		}
		cl.Conn.Close()
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
	relaytest.Eventually(t, wait, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}
