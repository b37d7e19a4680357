package relaytest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/execlog"
	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/relay"
)

const wait = 5 * time.Second

// Run runs the whole suite against impl, once for each of its ports.
func Run(t *testing.T, impl Impl) {
	ports := impl.Ports
	if len(ports) == 0 {
		ports = []Port{PortRing}
	}
	forms := impl.Forms
	if len(forms) == 0 {
		forms = []relay.Handshake{relay.Handshake04}
	}
	for _, p := range ports {
		for _, f := range forms {
			impl.Port, impl.Form = p, f
			t.Run("port="+string(p)+"/handshake="+f.String(), func(t *testing.T) { runPort(t, impl) })
		}
	}
}

func runPort(t *testing.T, impl Impl) {
	for _, tc := range Basic {
		t.Run(tc.Name, func(t *testing.T) { tc.F(t, impl) })
	}
	t.Run("Improvements", func(t *testing.T) {
		for _, tc := range Improvements {
			t.Run(tc.Name, func(t *testing.T) {
				if !impl.Improved {
					t.Skipf("%s: improvement over 0.4.4 not in this implementation: %s", impl.Name, tc.Why)
				}
				tc.F(t, impl)
			})
		}
	})
}

// Case is one conformance test.
type Case struct {
	Name string
	Why  string // for improvements: what 0.4.4 gets wrong
	F    func(t *testing.T, impl Impl)
}

// Basic is the behaviour of microsandbox 0.4.4 that every implementation has.
var Basic = []Case{
	{Name: "Handshake", F: testHandshake},
	{Name: "PreReadyFramesDiscarded", F: testPreReady},
	{Name: "ReadyTimeoutNamesReady", F: testReadyTimeout},
	{Name: "RoutesBothWays", F: testRoutes},
	{Name: "SigkillOnDisconnect", F: testSigkill},
	{Name: "ShutdownForwardedAndNotified", F: testShutdown},
	{Name: "SixteenClients", F: testSixteen},
	{Name: "DisconnectMidFrame", F: testMidFrame},
	{Name: "ExecLogTap", F: testExecLog},
	{Name: "GuestEndClosesClients", F: testGuestEnd},
	{Name: "StopRemovesSocket", F: testStop},
}

// Improvements is what the reactor does better than 0.4.4 (PROTOCOL.md,
// "What the original gets wrong").
var Improvements = []Case{
	{Name: "NoDropWhenRingFull", Why: "0.4.4 drops host→guest frames after ~50 ms of a full ring", F: testNoDrop},
	{Name: "SlowClientEvicted", Why: "0.4.4 lets one slow client stall every client", F: testEvict},
	{Name: "ForeignIDDisconnects", Why: "0.4.4 forwards frames under any id", F: testForeignID},
	{Name: "MalformedClientFrame", Why: "0.4.4 only drops the reader task", F: testMalformed},
	{Name: "Quarantine", Why: "0.4.4 delivers a departed client's late frames to the slot's next client", F: testQuarantine},
	{Name: "AcceptQueue", Why: "0.4.4 closes a 17th client silently", F: testAcceptQueue},
	{Name: "CorruptGuestResync", Why: "0.4.4 clears its whole buffer on corrupt guest framing", F: testCorrupt},
	{Name: "SocketPrivate", Why: "0.4.4 leaves the socket's mode to the umask", F: testSocketMode},
	{Name: "StopFlushesQueued", Why: "0.4.4 drops what is queued for clients when it stops", F: testStopFlushes},
	{Name: "InitAck", Why: "0.4.4 predates core.init.resolved: a 0.6+ guest waits for core.init.ack before core.ready", F: testInitAck},
	{Name: "UndecodableReady", Why: "0.4.4 caches any frame typed core.ready", F: testBadReady},
	{Name: "OtherFormClient", Why: "0.4.4 has one form and forwards any id", F: testOtherFormClient},
}

func msg(t testing.TB, id uint32, typ frame.Type, p any) []byte {
	t.Helper()
	raw, err := frame.AppendMessage(nil, id, typ, p)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func stdout(t testing.TB, id uint32, data string) []byte {
	return msg(t, id, frame.TypeExecStdout, frame.ExecStdout{Data: []byte(data)})
}

func execReq(t testing.TB, id uint32, cmd string, tty bool) []byte {
	return msg(t, id, frame.TypeExecRequest, frame.ExecRequest{Cmd: cmd, Args: []string{}, Env: []string{}, TTY: tty, Rows: 24, Cols: 80, Rlimits: []frame.Rlimit{}})
}

func sameBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %x, want %x", what, got, want)
	}
}

func stats(t testing.TB, e *Env) relay.Stats {
	t.Helper()
	s, ok := e.Server.(interface{ Stats() relay.Stats })
	if !ok {
		t.Fatalf("%s has no Stats", e.Impl.Name)
	}
	return s.Stats()
}

func testHandshake(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{})
	c0 := e.Dial(t)
	if c0.Offset != 0 {
		t.Fatalf("first client offset %d, want 0", c0.Offset)
	}
	sameBytes(t, "cached ready frame", c0.Ready, e.Ready)
	c1 := e.Dial(t)
	if c1.Offset != e.Step() {
		t.Fatalf("second client offset %d, want %d", c1.Offset, e.Step())
	}
	sameBytes(t, "cached ready frame", c1.Ready, e.Ready)
	c0.Conn.Close()
	// The lowest free slot is handed out again once the relay has seen the
	// departure.
	Eventually(t, wait, "slot 0 to be reused", func() bool {
		c, err := e.DialErr(wait)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Conn.Close()
		return c.Offset == 0
	})
}

func testPreReady(t *testing.T, impl Impl) {
	early := stdout(t, 1, "before ready")
	e := Start(t, impl, Config{PreReady: [][]byte{early, msg(t, 2, frame.TypeExecStarted, frame.ExecStarted{Pid: 7})}})
	c := e.Dial(t)
	sameBytes(t, "handshake ready frame", c.Ready, e.Ready)
	late := stdout(t, 1, "after ready")
	e.Guest.Send(t, late)
	sameBytes(t, "first routed frame", c.Next(t, wait), late)
}

func testReadyTimeout(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{NoReady: true, Options: func(o *relay.Options) { o.ReadyTimeout = 300 * time.Millisecond }})
	start := time.Now()
	err := e.Server.WaitReady(t.Context())
	if err == nil || !strings.Contains(err.Error(), "core.ready") {
		t.Fatalf("WaitReady = %v, want an error naming core.ready", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Fatalf("WaitReady failed after %v, want about 300ms", d)
	}
}

func testRoutes(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{})
	c0, c1 := e.Dial(t), e.Dial(t)
	req := execReq(t, c0.ID(1), "ls", false)
	c0.Send(t, req)
	sameBytes(t, "client→guest", e.Guest.Next(t, wait), req)
	in := msg(t, c1.ID(9), frame.TypeExecStdin, frame.ExecStdin{Data: []byte("abc")})
	c1.Send(t, in)
	sameBytes(t, "client→guest", e.Guest.Next(t, wait), in)

	e.Guest.Send(t, stdout(t, 7*e.Step()+3, "nobody's")) // slot 7 is empty: dropped
	o0, o1 := stdout(t, c0.ID(1), "to zero"), stdout(t, c1.ID(9), "to one")
	e.Guest.Send(t, o1)
	e.Guest.Send(t, o0)
	sameBytes(t, "guest→client 0", c0.Next(t, wait), o0)
	sameBytes(t, "guest→client 1", c1.Next(t, wait), o1)
	// Ids above 16·STEP belong to slot 15 (min(id/STEP, 15)); with slot 15
	// empty they go nowhere, in particular not to 0 or 1.
	e.Guest.Send(t, stdout(t, 0xffffffff, "top"))
	e.Guest.Send(t, o0)
	sameBytes(t, "guest→client 0 after drops", c0.Next(t, wait), o0)
	if f, err := c1.Recv(100 * time.Millisecond); err == nil {
		t.Fatalf("client 1 got a frame meant for nobody: %x", f)
	}
}

func testSigkill(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{})
	c := e.Dial(t)
	for _, f := range [][]byte{
		execReq(t, c.ID(1), "sleep", false),
		execReq(t, c.ID(2), "true", false),
		msg(t, c.ID(3), frame.TypeFsRequest, frame.FsRequest{Op: frame.FsOp{Kind: frame.FsStat, Path: "/"}}),
	} {
		c.Send(t, f)
		e.Guest.Next(t, wait)
	}
	e.Guest.Send(t, msg(t, c.ID(2), frame.TypeExecExited, frame.ExecExited{Code: 0}))
	sameBytes(t, "exited", c.Next(t, wait), msg(t, c.ID(2), frame.TypeExecExited, frame.ExecExited{Code: 0}))
	c.Conn.Close()
	want := map[uint32]bool{c.ID(1): true, c.ID(3): true}
	for len(want) > 0 {
		f := e.Guest.Next(t, wait)
		m := Decode(t, f)
		if !want[m.ID] {
			t.Fatalf("unexpected frame after disconnect: id %d type %s", m.ID, m.TypeName)
		}
		delete(want, m.ID)
		sameBytes(t, "SIGKILL frame", f, msg(t, m.ID, frame.TypeExecSignal, frame.ExecSignal{Signal: 9}))
	}
	if e.Impl.form() == relay.Handshake05 {
		// Then upstream's notice, id 0, no flags, with the slot's range.
		f := e.Guest.Notice(t, wait)
		m := Decode(t, f)
		var p struct {
			Start uint32 `cbor:"id_start"`
			End   uint32 `cbor:"id_end_exclusive"`
		}
		if m.TypeName != "core.relay.client.disconnected" || m.ID != 0 || m.Flags != 0 || m.Into(&p) != nil ||
			p.Start != c.Offset+1 || p.End != c.Offset+c.Step {
			t.Fatalf("after the SIGKILLs: id %d flags %#x %s %+v, want core.relay.client.disconnected {%d, %d}",
				m.ID, m.Flags, m.TypeName, p, c.Offset+1, c.Offset+c.Step)
		}
	} else {
		e.Guest.NoNotice(t, 100*time.Millisecond)
	}
	e.Guest.Quiet(t, 100*time.Millisecond)
}

func testShutdown(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{})
	c := e.Dial(t)
	sd := msg(t, 0, frame.TypeShutdown, nil)
	c.Send(t, sd)
	sameBytes(t, "shutdown", e.Guest.Next(t, wait), sd)
	select {
	case <-e.Server.Shutdowns():
	case <-time.After(wait):
		t.Fatal("owner was not notified of core.shutdown")
	}
}

// echo reflects every host→guest frame back until stop is closed.
func echo(t testing.TB, g *Guest, stop chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case f := <-g.frames:
				if _, err := g.Write(f); err != nil {
					return
				}
			case <-stop:
				return
			}
		}
	}()
	return &wg
}

func testSixteen(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{})
	stop := make(chan struct{})
	defer func() { close(stop) }()
	echo(t, e.Guest, stop)
	clients := make([]*Client, e.Slots())
	seen := map[uint32]bool{}
	for i := range clients {
		clients[i] = e.Dial(t)
		if seen[clients[i].Offset] {
			t.Fatalf("offset %d handed out twice", clients[i].Offset)
		}
		seen[clients[i].Offset] = true
	}
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for _, c := range clients {
		wg.Add(2)
		go func() {
			defer wg.Done()
			var buf []byte
			for i := range uint32(n) {
				buf, _ = frame.AppendMessage(buf[:0], c.ID(1+i%1000), frame.TypeExecStdin, frame.ExecStdin{Data: binary.BigEndian.AppendUint32(nil, c.Offset+i)})
				if _, err := c.Conn.Write(buf); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := range uint32(n) {
				f, err := c.Recv(10 * time.Second)
				if err != nil {
					errs <- err
					return
				}
				m, err := frame.Decode(f)
				var in frame.ExecStdin
				if err == nil {
					err = m.Into(&in)
				}
				if err != nil || m.ID != c.ID(1+i%1000) || binary.BigEndian.Uint32(in.Data) != c.Offset+i {
					errs <- errors.New("client got a wrong or out-of-order frame")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func testMidFrame(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{})
	c0, c1 := e.Dial(t), e.Dial(t)
	whole := msg(t, c0.ID(1), frame.TypeExecStdin, frame.ExecStdin{Data: []byte("whole")})
	half := msg(t, c0.ID(1), frame.TypeExecStdin, frame.ExecStdin{Data: bytes.Repeat([]byte("x"), 1000)})
	c0.Send(t, append(bytes.Clone(whole), half[:500]...))
	sameBytes(t, "whole frame", e.Guest.Next(t, wait), whole)
	c0.Conn.Close()
	time.Sleep(50 * time.Millisecond)
	after := msg(t, c1.ID(1), frame.TypeExecStdin, frame.ExecStdin{Data: []byte("after")})
	c1.Send(t, after)
	sameBytes(t, "next client's frame, stream intact", e.Guest.Next(t, wait), after)
}

func testExecLog(t *testing.T, impl Impl) {
	dir := t.TempDir()
	w, err := execlog.Open(dir, execlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := Start(t, impl, Config{Options: func(o *relay.Options) { o.ExecLog = w }})
	c := e.Dial(t)
	c.Send(t, execReq(t, c.ID(1), "sh", false))
	c.Send(t, execReq(t, c.ID(2), "bash", true))
	e.Guest.Next(t, wait)
	e.Guest.Next(t, wait)
	for _, f := range [][]byte{
		stdout(t, c.ID(1), "hello\n"),
		msg(t, c.ID(1), frame.TypeExecStderr, frame.ExecStderr{Data: []byte("oops \xff\n")}),
		stdout(t, c.ID(2), "tty out\n"),
		msg(t, c.ID(1), frame.TypeExecExited, frame.ExecExited{Code: 0}),
		stdout(t, c.ID(1), "after exit: not a session any more\n"),
	} {
		e.Guest.Send(t, f)
		c.Next(t, wait)
	}
	e.Server.Stop()
	e.Wait(t, wait)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "exec.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type line struct {
		T, S, D string
		ID      *uint64
	}
	var got []line
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		if _, err := time.Parse("2006-01-02T15:04:05.000Z", l.T); err != nil {
			t.Fatalf("bad time in %q", sc.Text())
		}
		got = append(got, l)
	}
	want := []struct {
		s, d string
		id   uint64
	}{
		{"system", "--- sandbox started ---\n", 0},
		{"stdout", "hello\n", 1},
		{"stderr", "oops \ufffd\n", 1},
		{"output", "tty out\n", 2},
	}
	if len(got) != len(want) {
		t.Fatalf("exec.log has %d lines, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.S != w.s || g.D != w.d || (w.id == 0) != (g.ID == nil) || (g.ID != nil && *g.ID != w.id) {
			t.Fatalf("line %d = %+v, want %+v", i, g, w)
		}
	}
}

func testGuestEnd(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{})
	c := e.Dial(t)
	last := stdout(t, c.ID(1), "last words")
	e.Guest.Send(t, last)
	e.Guest.CloseWrite()
	sameBytes(t, "frame before the end", c.Next(t, wait), last)
	c.Closed(t, wait)
	e.Wait(t, wait)
	if _, err := os.Stat(e.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket still there after the guest ended: %v", err)
	}
}

func testStop(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{})
	c := e.Dial(t)
	e.Server.Stop()
	if err := e.Wait(t, wait); err != nil {
		t.Fatalf("Run after Stop = %v, want nil", err)
	}
	c.Closed(t, wait)
	if _, err := os.Stat(e.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket still there after Stop: %v", err)
	}
}

// testStopFlushes: what the guest sent a client that was not reading is
// queued in the relay; Stop (SIGTERM in the binary) delivers all of it
// before closing the client.
func testStopFlushes(t *testing.T, impl Impl) {
	e := Start(t, impl, Config{})
	c := e.Dial(t)
	const n = 64
	var want [][]byte
	for i := range n {
		f := stdout(t, c.ID(1), strings.Repeat(string(rune('a'+i%26)), 32<<10))
		want = append(want, f)
		e.Guest.Send(t, f)
	}
	Eventually(t, wait, "the relay to take every guest frame", func() bool {
		return stats(t, e).FramesToClient == n
	})
	e.Server.Stop()
	for i := range n {
		sameBytes(t, fmt.Sprintf("frame %d after Stop", i), c.Next(t, wait), want[i])
	}
	c.Closed(t, wait)
	if err := e.Wait(t, wait); err != nil {
		t.Fatalf("Run after Stop = %v, want nil", err)
	}
}
