package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/agentrelay/agentrelay/cmd/internal/serve"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/execlog"
	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/ring"
)

// The flood runs the 0.5 handshake: 128 slots, the most clients a relay
// serves.
const (
	memClients     = relay.MaxSlots
	memStep        = frame.Step05
	memMaxSessions = 4096 // relay.Options.MaxSessions default
	// memSessions is what each client opens: the relay's MaxSessionsTotal
	// (16 × 4096) shared by every slot, so that the first client of each
	// slot has sessions for the guest's output (and exec.log) to go to; the
	// clients that come back after an eviction are refused.
	memSessions = 16 * memMaxSessions / memClients
)

// memFloodFor is how long TestMemoryBound floods the relay.
const memFloodFor = 6 * time.Second

// TestMemoryBound floods the real binary from every side at once and checks
// that its peak RSS stays within relay/doc.go's bound plus an allowance for
// the Go runtime measured on the idle relay:
//
//   - up to 208 clients, in the 0.5 handshake: 128 hold the slots, 64 wait
//     in the accept queue, the rest are turned away and retry;
//   - every client that gets a slot opens its share of the relay's
//     MaxSessionsTotal in exec sessions (those that come back after an
//     eviction are refused), then writes maximum-size frames nonstop and
//     never reads, so the input budget runs out;
//   - the guest (the test, over unix:) reads its console only 250 ms in
//     every 1.25 s, so the Rx ring is full most of the time, and writes
//     maximum-size core.exec.stdout frames to every slot, under the open
//     sessions' ids so that exec.log captures them (every byte a control
//     character, the worst case for the JSON escaping);
//   - clients that do not read are evicted and reconnect.
//
// The race detector's shadow memory would swamp the figure, so this test
// runs without -race only (`make unit` runs it after the race pass).
func TestMemoryBound(t *testing.T) {
	if raceEnabled {
		t.Skip("RSS under the race detector is mostly the detector's shadow memory; run without -race (make unit does)")
	}
	// The bound of relay/doc.go for the binary's defaults: the relay's own
	// memory, the console and exec.log (the relay's lane and the shared one).
	xl, err := execlog.Open(t.TempDir(), execlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bound := uint64(relay.Options{Handshake: relay.Handshake05}.MemoryBound() + 2*ring.DefaultCapacity + xl.MemoryBound(2))
	xl.Close()

	g, path := newFakeGuest(t, 0)
	logDir := privateDir(t)
	p := startRelay(t, "--guest", "unix:"+path, "--exec-log", logDir, "--debug-addr", "127.0.0.1:0", "--handshake", "0.5")
	var gc net.Conn
	select {
	case gc = <-g.conn:
	case <-time.After(10 * time.Second):
		t.Fatalf("relay never connected to the guest\n%s", p.stderr.String())
	}
	defer gc.Close()
	gc.Write(enc(t, 0, frame.TypeReady, frame.Ready{}))
	p.waitSocket(t)
	addr := memDebugAddr(t, p)
	pid := p.cmd.Process.Pid

	// Idle: started, ready, one client served, debug endpoint up.
	c, _ := dialRelay05(t, p.socket)
	c.Close()
	time.Sleep(300 * time.Millisecond)
	idle := memStatus(t, pid, "VmRSS")
	idleAnon, idleFile := memStatus(t, pid, "RssAnon"), memStatus(t, pid, "RssFile")

	end := time.Now().Add(memFloodFor)
	var wg sync.WaitGroup
	var latest [memClients]atomic.Uint32 // newest session id the guest saw per slot
	var reading atomic.Bool
	var guestRead, guestWrote, clientWrote, reconnects atomic.Uint64

	// The guest's reader: 250 ms of reading in every 1.25 s.
	wg.Add(2)
	go func() {
		defer wg.Done()
		for time.Now().Before(end) {
			reading.Store(false)
			time.Sleep(time.Second)
			reading.Store(true)
			time.Sleep(250 * time.Millisecond)
		}
		reading.Store(true)
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 1<<20)
		var hdr [frame.HeaderSize]byte
		have, skip := 0, 0
		for time.Now().Before(end.Add(time.Second)) {
			if !reading.Load() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			gc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			n, err := gc.Read(buf)
			guestRead.Add(uint64(n))
			for b := buf[:n]; len(b) > 0; {
				if skip > 0 {
					k := min(skip, len(b))
					skip, b = skip-k, b[k:]
					continue
				}
				k := copy(hdr[have:], b)
				have, b = have+k, b[k:]
				if have < frame.HeaderSize {
					continue
				}
				id := binary.BigEndian.Uint32(hdr[4:])
				if hdr[8]&frame.FlagSessionStart != 0 {
					latest[min(id/memStep, memClients-1)].Store(id)
				}
				skip, have = int(binary.BigEndian.Uint32(hdr[:]))-5, 0
			}
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
		}
	}()

	// The guest's writer: stdout frames of 64 KiB to 4 MiB (so that output
	// buffers grow step by step, leaving garbage behind), first three to the
	// newest sessions it has seen in each slot (so that exec.log captures
	// them before the new client's buffer is full), then to every slot in
	// turn, which keeps every client's buffer full and the guest stream
	// stalled until the relay evicts someone.
	outs := [][]byte{
		memFrame(t, frame.TypeExecStdout, 64<<10, func(d []byte) any { return frame.ExecStdout{Data: d} }),
		memFrame(t, frame.TypeExecStdout, 256<<10, func(d []byte) any { return frame.ExecStdout{Data: d} }),
		memFrame(t, frame.TypeExecStdout, 1<<20, func(d []byte) any { return frame.ExecStdout{Data: d} }),
		memFrame(t, frame.TypeExecStdout, frame.MaxFrame, func(d []byte) any { return frame.ExecStdout{Data: d} }),
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		gc.SetWriteDeadline(end)
		var fed [memClients]uint32
		var fedN [memClients]int
		for i := 0; time.Now().Before(end); i++ {
			slot := i % memClients
			id := latest[slot].Load()
			for s := range memClients {
				if l := latest[s].Load(); l != 0 && (l != fed[s] || fedN[s] < 3) {
					if l != fed[s] {
						fed[s], fedN[s] = l, 0
					}
					fedN[s]++
					slot, id = s, l
					break
				}
			}
			if id == 0 {
				id = uint32(slot)*memStep + 1
			}
			out := outs[i%len(outs)]
			binary.BigEndian.PutUint32(out[4:], id)
			n, err := gc.Write(out)
			guestWrote.Add(uint64(n))
			if err != nil {
				return
			}
		}
	}()

	// Clients. Each slot's maximum-size stdin frame is shared read-only by
	// whoever holds the slot; its id need not be a session's.
	var in [memClients][]byte
	for s := range in {
		in[s] = memFrame(t, frame.TypeExecStdin, frame.MaxFrame, func(d []byte) any { return frame.ExecStdin{Data: d} })
		binary.BigEndian.PutUint32(in[s][4:], uint32(s)*memStep+1)
	}
	req := enc(t, 0, frame.TypeExecRequest, frame.ExecRequest{Cmd: "x", Args: []string{}, Env: []string{}, Rows: 24, Cols: 80, Rlimits: []frame.Rlimit{}})
	var gens atomic.Uint32
	const workers = memClients + 64 + 16
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := make([]byte, 0, (memSessions+1)*len(req))
			for time.Now().Before(end) {
				conn, err := net.Dial("unix", p.socket)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				reconnects.Add(1)
				conn.SetDeadline(end)
				br := bufio.NewReader(conn)
				var off [8]byte // [id_start][id_end_exclusive]
				if _, err := io.ReadFull(br, off[:]); err != nil {
					conn.Close() // turned away, or waited in vain: try again
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if _, err := memSkipFrame(br); err != nil {
					conn.Close()
					continue
				}
				// Sessions up to the limit, under ids no earlier client of
				// this slot used (they may still be quarantined).
				base := binary.BigEndian.Uint32(off[:]) + gens.Add(1)%(memStep/(memSessions+1)-1)*(memSessions+1)
				batch = batch[:0]
				// One more than the share: with every slot's first client
				// in, the relay's limit refuses some starts, whatever the
				// timing of evictions.
				for j := range uint32(memSessions + 1) {
					batch = append(batch, req...)
					binary.BigEndian.PutUint32(batch[len(batch)-len(req)+4:], base+j)
				}
				slot := binary.BigEndian.Uint32(off[:]) / memStep
				for _, err = conn.Write(batch); err == nil; {
					var n int
					n, err = conn.Write(in[slot])
					clientWrote.Add(uint64(n))
				}
				conn.Close() // evicted (or the flood is over): come back
			}
		}()
	}

	// Sample RSS while it lasts; VmHWM has the true peak.
	var sampled []string
	for time.Now().Before(end) {
		time.Sleep(500 * time.Millisecond)
		sampled = append(sampled, fmt.Sprintf("%.0f", float64(memStatus(t, pid, "VmRSS"))/(1<<20)))
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("flood goroutines did not stop")
	}
	peak := memStatus(t, pid, "VmHWM")
	st := memStats(t, "http://"+addr+"/stats")
	vars, gcCPU := memRuntime(t, "http://"+addr+"/debug/vars")

	// The allowance for what the formula leaves out is the idle relay's RSS
	// — the binary's code and data, the runtime, goroutine stacks, the debug
	// endpoint: all there before the first frame — plus the headroom the
	// binary's memory limit grants the garbage collector above the bound.
	allowance := idle + serve.MemoryHeadroom
	const MiB = 1 << 20
	t.Logf("idle RSS %.1f MiB (%.1f anonymous, %.1f file); flood %v: RSS every 0.5 s %s MiB; peak RSS (VmHWM) %.1f MiB; bound %.1f MiB + allowance %.1f MiB = %.1f MiB",
		float64(idle)/MiB, float64(idleAnon)/MiB, float64(idleFile)/MiB, memFloodFor, strings.Join(sampled, " "),
		float64(peak)/MiB, float64(bound)/MiB, float64(allowance)/MiB, float64(bound+allowance)/MiB)
	t.Logf("runtime at the end: HeapAlloc %d MiB, HeapSys %d MiB, HeapReleased %d MiB, Sys %d MiB, NumGC %d, GC CPU %.1f%%",
		vars["HeapAlloc"]/MiB, vars["HeapSys"]/MiB, vars["HeapReleased"]/MiB, vars["Sys"]/MiB, vars["NumGC"], gcCPU*100)
	t.Logf("flood: guest read %d MiB, wrote %d MiB; clients wrote %d MiB in %d connections; relay: %d sessions opened, %d evictions, %d queued, %d accept timeouts, %d overflows, ring full %v, guest stalled %v, exec.log %d lines %d MiB (lost %d MiB)",
		guestRead.Load()/MiB, guestWrote.Load()/MiB, clientWrote.Load()/MiB, reconnects.Load(),
		st["SessionsOpened"], st["Evictions"], st["AcceptQueued"], st["AcceptTimeouts"], st["AcceptOverflows"],
		time.Duration(st["RingFullNanos"]).Round(time.Millisecond), time.Duration(st["GuestStallNanos"]).Round(time.Millisecond),
		st["ExecLogLines"], st["ExecLogBytes"]/MiB, st["ExecLogLostBytes"]/MiB)

	// The flood reached every side.
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"sessions opened up to the relay's limit", st["SessionsOpened"] >= 16*memMaxSessions && st["SessionsRefused"] > 0},
		{"the input budget spent", st["InputStarved"] > 0},
		{"slow clients evicted", st["Evictions"] > 0},
		{"the accept queue used", st["AcceptQueued"] > 0},
		{"the accept queue overflowed", st["AcceptOverflows"] > 0},
		{"the Rx ring full", st["RingFullNanos"] > uint64(time.Second)},
		{"exec.log written", st["ExecLogBytes"] > 16<<20}, // 58–155 MiB in runs of the 128-client flood
		{"no protocol errors", st["ProtocolErrors"] == 0},
	} {
		if !c.ok {
			t.Errorf("flood incomplete: %s: counters %v", c.name, st)
		}
	}
	if peak > bound+allowance {
		t.Errorf("peak RSS %.1f MiB exceeds the bound %.1f MiB + allowance %.1f MiB", float64(peak)/MiB, float64(bound)/MiB, float64(allowance)/MiB)
		if prof, err := memGet("http://" + addr + "/debug/pprof/heap?debug=1"); err == nil {
			if len(prof) > 8000 {
				prof = prof[:8000]
			}
			t.Logf("heap profile:\n%s", prof)
		}
	}
}

// memFrame encodes a message whose data makes it exactly size bytes, every
// data byte 0x01 (escaped as \u0001 in exec.log: six bytes for one).
func memFrame(t *testing.T, typ frame.Type, size int, payload func([]byte) any) []byte {
	t.Helper()
	d := size - 64 // the envelope takes less
	for range 4 {  // CBOR's length headers grow with the length: converge
		f, err := frame.AppendMessage(nil, 0, typ, payload(bytes.Repeat([]byte{1}, d)))
		if err != nil {
			t.Fatal(err)
		}
		if len(f) == size {
			return f
		}
		d += size - len(f)
	}
	t.Fatalf("no frame of exactly %d bytes", size)
	return nil
}

// memSkipFrame reads past one frame.
func memSkipFrame(r io.Reader) (int64, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	return io.CopyN(io.Discard, r, int64(binary.BigEndian.Uint32(hdr[:])))
}

// memStatus returns a /proc/PID/status memory field in bytes.
func memStatus(t *testing.T, pid int, field string) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %q", field, l)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// memDebugAddr finds the debug endpoint's address in the relay's log.
func memDebugAddr(t *testing.T, p *proc) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range strings.Split(p.stderr.String(), "\n") {
			if _, a, ok := strings.Cut(l, "addr="); ok && strings.Contains(l, "debug endpoint") {
				return strings.Fields(a)[0]
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no debug endpoint logged:\n%s", p.stderr.String())
	return ""
}

func memGet(url string) (string, error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// memStats reads the relay's counters (/stats).
func memStats(t *testing.T, url string) map[string]uint64 {
	t.Helper()
	body, err := memGet(url)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]uint64
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// memRuntime reads the runtime's memstats from expvar (/debug/vars).
func memRuntime(t *testing.T, url string) (map[string]uint64, float64) {
	t.Helper()
	body, err := memGet(url)
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Memstats map[string]any }
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for k, x := range v.Memstats {
		if f, ok := x.(float64); ok {
			m[k] = uint64(f)
		}
	}
	gc, _ := v.Memstats["GCCPUFraction"].(float64)
	return m, gc
}

// dialRelay05 connects to a relay speaking the 0.5 handshake and reads it.
func dialRelay05(t *testing.T, socket string) (net.Conn, uint32) {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	var hs [8]byte
	if _, err := io.ReadFull(c, hs[:]); err != nil {
		t.Fatal(err)
	}
	readFrame(t, c)
	return c, binary.BigEndian.Uint32(hs[:])
}
