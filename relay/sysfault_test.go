package relay_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/guest"
	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/relaytest"
	"github.com/agentrelay/agentrelay/ring"
)

// Syscall fault injection and a real signal storm. Both run checksummed,
// pipelined traffic through an echo guest that verifies every frame it
// gets, and require every byte back, in order, with the relay's counters
// adding up.

var sysFaultSeed = flag.Uint64("sysfault.seed", 0, "seed of TestSysFault's injector (0: from the clock)")

// The injector's odds, per call.
const (
	pReadEINTR     = 0.10 // read: EINTR, no call made
	pReadShortHup  = 0.50 // read after the peer shut down: ask the kernel for fewer bytes
	pWriteEINTR    = 0.10 // write: EINTR, no call made
	pWriteShort    = 0.20 // write: ask the kernel for fewer bytes
	pEAGAINAfter   = 0.50 // after a short write that wrote something: the next write says EAGAIN
	pAcceptEINTR   = 0.20
	pAcceptAborted = 0.10 // ECONNABORTED, no call made
	pAcceptEMFILE  = 0.10 // EMFILE, no call made; the relay retries in 100 ms
	maxEMFILE      = 3
)

// faultInjector stands in for the relay's read, write and accept4 on client
// and listening sockets. It only fakes what the kernel can legitimately do
// to a relay that uses edge-triggered epoll, because a fault the kernel
// cannot produce would hang the relay legitimately rather than find a bug:
//
//   - EINTR, on all three, without making the call. (A non-blocking socket
//     call does not sleep and so never really returns EINTR, but the relay
//     must not care; EINTR consumes nothing, so the relay keeps the fd on its
//     ready list and retries.)
//   - Short writes: the kernel is asked for fewer bytes than the relay
//     offered. The relay must loop on what is left.
//   - EAGAIN on write, only on the write right after a short write that did
//     write something to the same socket. Those bytes are in the peer's
//     receive queue, charged to the relay's socket; when the peer reads them
//     the kernel calls unix_write_space and epoll reports EPOLLOUT, so an
//     edge is guaranteed to follow, as after a real EAGAIN. (A spurious
//     EAGAIN on a socket with room and nothing in flight would never be
//     followed by an edge.)
//   - Short reads, only once the peer has shut down (poll says POLLRDHUP).
//     The relay takes a short read to mean "drained" (epoll(7): a stream
//     read returning less than asked has exhausted the socket) and waits for
//     the next edge. A short read with data left is not something the kernel
//     does on an AF_UNIX stream socket (MSG_OOB aside), and if the client
//     then waits for an answer no edge ever comes: the test would hang, not
//     the relay be wrong. After the peer's shutdown the relay has been told,
//     or is about to be told, EPOLLRDHUP, and must read on until EOF however
//     short the reads are: that is the path injected here.
//   - No EAGAIN on read: it is legitimate only when the socket is empty, and
//     then the real read says so itself; injecting it on a socket holding
//     data would strand that data for good (no edge comes for data already
//     there). Likewise no EAGAIN on accept4 with connections in the backlog.
//   - On the guest's socket (the fd port), the same: EINTR on read and
//     writev, short writevs (the kernel is offered a prefix of the iovecs)
//     and EAGAIN right after one. The guest itself writes in random pieces,
//     so frames arrive split at every possible point.
//   - ECONNABORTED and EMFILE on accept4, without the call. The relay skips
//     the first; after EMFILE the connection stays in the backlog and the
//     relay must come back on its own (it retries after 100 ms).
type faultInjector struct {
	mu       sync.Mutex
	rng      *rand.Rand
	eagainFD int // the next write to this fd says EAGAIN
	emfile   int
	guestFD  int // the relay's end of the guest's socket; -1 on the ring port

	// counts, guarded by mu
	reads, writes, accepts                 int
	readEINTR, readShortHup                int
	writeEINTR, writeShort, writeEAGAIN    int
	acceptEINTR, acceptAborted, acceptMFIL int
	kernelReadEAGAIN, kernelWriteEAGAIN    int
	readErrs, writeErrs                    map[string]int
	guestReads, guestReadEINTR             int
	writevs, writevEINTR, writevShort      int
	writevEAGAIN                           int
}

func newFaultInjector(seed uint64) *faultInjector {
	return &faultInjector{rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), eagainFD: -1, guestFD: -1,
		readErrs: map[string]int{}, writeErrs: map[string]int{}}
}

func (f *faultInjector) calls() relay.SysCalls {
	return relay.SysCalls{Read: f.read, Write: f.write, Writev: f.writev, Accept4: f.accept4}
}

// writev is the guest socket's write: EINTR, a short write (a prefix of the
// iovecs), EAGAIN after a short one.
func (f *faultInjector) writev(fd int, iovs [][]byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writevs++
	if f.eagainFD >= 0 {
		hit := f.eagainFD == fd
		f.eagainFD = -1
		if hit {
			f.writevEAGAIN++
			return -1, unix.EAGAIN
		}
	}
	roll := f.rng.Float64()
	if roll < pWriteEINTR {
		f.writevEINTR++
		return -1, unix.EINTR
	}
	total := 0
	for _, b := range iovs {
		total += len(b)
	}
	if roll < pWriteEINTR+pWriteShort && total > 1 {
		k := 1 + f.rng.IntN(total-1)
		if f.rng.IntN(2) == 0 {
			k = 1 + f.rng.IntN(min(total-1, 64))
		}
		var short [][]byte
		for _, b := range iovs {
			if k == 0 {
				break
			}
			b = b[:min(len(b), k)]
			k -= len(b)
			short = append(short, b)
		}
		n, err := unix.Writev(fd, short)
		if n > 0 {
			f.writevShort++
			if f.rng.Float64() < pEAGAINAfter {
				f.eagainFD = fd
			}
		}
		return n, err
	}
	return unix.Writev(fd, iovs)
}

// peerShutDown reports whether the peer of socket fd has shut down its
// sending side (or gone).
func peerShutDown(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
	n, err := unix.Poll(p, 0)
	return err == nil && n > 0 && p[0].Revents&(unix.POLLRDHUP|unix.POLLHUP) != 0
}

func (f *faultInjector) read(fd int, p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	guest := fd == f.guestFD
	if guest {
		f.guestReads++
	}
	roll := f.rng.Float64()
	if roll < pReadEINTR {
		f.readEINTR++
		if guest {
			f.guestReadEINTR++
		}
		return -1, unix.EINTR
	}
	var n int
	var err error
	if roll < pReadEINTR+pReadShortHup && len(p) > 1 && peerShutDown(fd) {
		k := 1 + f.rng.IntN(min(len(p)-1, 4096))
		n, err = unix.Read(fd, p[:k])
		if n > 0 {
			f.readShortHup++
		}
	} else {
		n, err = unix.Read(fd, p)
	}
	if err == unix.EAGAIN {
		f.kernelReadEAGAIN++
	} else if err != nil {
		f.readErrs[err.Error()]++
	}
	return n, err
}

func (f *faultInjector) write(fd int, p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if f.eagainFD >= 0 {
		// The relay's flush loop writes the same socket again right after
		// a short write; anything else would be a stale mark.
		hit := f.eagainFD == fd
		f.eagainFD = -1
		if hit {
			f.writeEAGAIN++
			return -1, unix.EAGAIN
		}
	}
	roll := f.rng.Float64()
	if roll < pWriteEINTR {
		f.writeEINTR++
		return -1, unix.EINTR
	}
	var n int
	var err error
	if roll < pWriteEINTR+pWriteShort && len(p) > 1 {
		k := 1 + f.rng.IntN(len(p)-1)
		if f.rng.IntN(2) == 0 {
			k = 1 + f.rng.IntN(min(len(p)-1, 64)) // a few bytes: splits headers
		}
		n, err = unix.Write(fd, p[:k])
		if n > 0 {
			f.writeShort++
			if f.rng.Float64() < pEAGAINAfter {
				f.eagainFD = fd
			}
		}
	} else {
		n, err = unix.Write(fd, p)
	}
	if err == unix.EAGAIN {
		f.kernelWriteEAGAIN++
	} else if err != nil {
		f.writeErrs[err.Error()]++
	}
	return n, err
}

func (f *faultInjector) accept4(fd, flags int) (int, unix.Sockaddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.accepts++
	roll := f.rng.Float64()
	switch {
	case roll < pAcceptEINTR:
		f.acceptEINTR++
		return -1, nil, unix.EINTR
	case roll < pAcceptEINTR+pAcceptAborted:
		f.acceptAborted++
		return -1, nil, unix.ECONNABORTED
	case roll < pAcceptEINTR+pAcceptAborted+pAcceptEMFILE && f.emfile < maxEMFILE:
		f.emfile++
		f.acceptMFIL++
		return -1, nil, unix.EMFILE
	}
	return unix.Accept4(fd, flags)
}

// short lists the kinds of fault that have not fired often enough yet.
func (f *faultInjector) short() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var miss []string
	for _, c := range []struct {
		what     string
		got, min int
	}{
		{"read EINTR", f.readEINTR, 30},
		{"short reads after hang-up", f.readShortHup, 30},
		{"write EINTR", f.writeEINTR, 30},
		{"short writes", f.writeShort, 50},
		{"write EAGAIN after a short write", f.writeEAGAIN, 30},
		{"accept4 EINTR", f.acceptEINTR, 10},
		{"accept4 ECONNABORTED", f.acceptAborted, 5},
		{"accept4 EMFILE", f.acceptMFIL, 1},
	} {
		if c.got < c.min {
			miss = append(miss, fmt.Sprintf("%s fired %d times, want at least %d", c.what, c.got, c.min))
		}
	}
	if f.guestFD < 0 {
		return miss
	}
	for _, c := range []struct {
		what     string
		got, min int
	}{
		{"guest read EINTR", f.guestReadEINTR, 30},
		{"guest writev EINTR", f.writevEINTR, 30},
		{"guest short writevs", f.writevShort, 50},
		{"guest writev EAGAIN after a short one", f.writevEAGAIN, 30},
	} {
		if c.got < c.min {
			miss = append(miss, fmt.Sprintf("%s fired %d times, want at least %d", c.what, c.got, c.min))
		}
	}
	return miss
}

func (f *faultInjector) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprintf("reads %d (EINTR %d, short after hang-up %d; kernel EAGAIN %d, errors %v), "+
		"writes %d (EINTR %d, short %d, EAGAIN after short %d; kernel EAGAIN %d, errors %v), "+
		"accepts %d (EINTR %d, ECONNABORTED %d, EMFILE %d), "+
		"guest reads %d (EINTR %d), guest writevs %d (EINTR %d, short %d, EAGAIN after short %d)",
		f.reads, f.readEINTR, f.readShortHup, f.kernelReadEAGAIN, f.readErrs,
		f.writes, f.writeEINTR, f.writeShort, f.writeEAGAIN, f.kernelWriteEAGAIN, f.writeErrs,
		f.accepts, f.acceptEINTR, f.acceptAborted, f.acceptMFIL,
		f.guestReads, f.guestReadEINTR, f.writevs, f.writevEINTR, f.writevShort, f.writevEAGAIN)
}

// TestSysFault runs 8 pipelined checksummed streamers and two churners
// (clients that send a burst of frames and a partial one and hang up, or
// connect and vanish before the handshake) with every client-socket syscall
// of the relay going through the fault injector. Every streamer must get
// back exactly what it sent, in order; the guest must see every complete
// frame intact and nothing else; the counters must add up; and each kind of
// fault must actually have fired.
func TestSysFault(t *testing.T) {
	for _, port := range ports {
		t.Run("port="+string(port), func(t *testing.T) { testSysFault(t, port) })
	}
}

func testSysFault(t *testing.T, port relaytest.Port) {
	seed := *sysFaultSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("injector seed %d (reproduce the injector's decisions with -sysfault.seed=%d)", seed, seed)
	inj := newFaultInjector(seed)
	t.Cleanup(relay.SetSysCalls(inj.calls())) // runs after the rig has stopped
	rig := newEchoRig(t, port, 1<<18, nil)
	if port == relaytest.PortFD {
		inj.mu.Lock()
		inj.guestFD = relay.GuestFD(rig.R)
		inj.mu.Unlock()
	}

	// Traffic runs for 1.5 s, and on until every kind of fault has fired
	// often enough to mean something (a slow machine moves less traffic),
	// for 6 s at most.
	start := time.Now()
	var stopped atomic.Bool
	more := func() bool { return !stopped.Load() }
	checkerDone := make(chan struct{})
	go func() {
		defer close(checkerDone)
		for !stopped.Load() {
			time.Sleep(20 * time.Millisecond)
			if d := time.Since(start); d >= 6*time.Second || d >= 1500*time.Millisecond && len(inj.short()) == 0 {
				stopped.Store(true)
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var streamed, churned streamTotals
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	// The streamers connect first: a slot that a churner has left receives
	// the echoes of its frames (no session, no quarantine), which a
	// streamer taking the slot would rightly get.
	var streamers []*relaytest.Client
	for range 8 {
		cl, err := rig.Env.DialErr(5 * time.Second)
		if err != nil {
			t.Fatalf("streamer: dial: %v", err)
		}
		streamers = append(streamers, cl)
	}
	for w, cl := range streamers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cl.Conn.Close()
			tot, err := streamChecked(cl, seed+uint64(w), more, 32, true)
			mu.Lock()
			streamed.add(tot)
			mu.Unlock()
			if err != nil {
				fail(fmt.Errorf("streamer %d: %w", w, err))
			}
		}()
	}
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tot, err := churn(rig.Env, seed+100+uint64(w), more)
			mu.Lock()
			churned.add(tot)
			mu.Unlock()
			if err != nil {
				fail(fmt.Errorf("churner %d: %w", w, err))
			}
		}()
	}
	wg.Wait()
	stopped.Store(true)
	<-checkerDone
	dur := time.Since(start).Round(time.Millisecond)
	for _, err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.Logf("injector: %v", inj)
		t.FailNow()
	}

	want := streamed.frames + churned.frames
	r := rig.R
	settled := func() bool {
		s := r.Stats()
		return s.ClientsActive == 0 && s.FramesToGuest == want && rig.Echo.frames.Load() == want &&
			s.FramesToClient+s.NoClientDrops == want
	}
	for deadline := time.Now().Add(5 * time.Second); !settled(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("counters never settled: want %d frames (%d streamed, %d churned in %d connections); guest saw %d; relay %+v; injector %v",
				want, streamed.frames, churned.frames, churned.conns, rig.Echo.frames.Load(), r.Stats(), inj)
		}
	}
	s := r.Stats()
	t.Logf("%v: %d streamed frames (%.1f MB) checked end to end, %d churner frames in %d connections (%d vanished before the handshake); relay: %+v",
		dur, streamed.frames, float64(streamed.bytes)/1e6, churned.frames, churned.conns, churned.vanished, s)
	t.Logf("injector: %v", inj)
	if s.BytesToGuest != streamed.bytes+churned.bytes {
		t.Errorf("BytesToGuest = %d, want %d", s.BytesToGuest, streamed.bytes+churned.bytes)
	}
	if bad := rig.Echo.bad.Load(); bad != 0 {
		t.Errorf("the guest got %d corrupted frames", bad)
	}
	if s.ProtocolErrors != 0 || s.Evictions != 0 || s.CorruptIncidents != 0 || s.QuarantineDrops != 0 {
		t.Errorf("ProtocolErrors %d, Evictions %d, CorruptIncidents %d, QuarantineDrops %d: want none",
			s.ProtocolErrors, s.Evictions, s.CorruptIncidents, s.QuarantineDrops)
	}
	if s.Disconnects != s.ClientsAccepted {
		t.Errorf("Disconnects %d != ClientsAccepted %d with no client left", s.Disconnects, s.ClientsAccepted)
	}
	if min := uint64(8 + churned.conns); s.ClientsAccepted < min {
		t.Errorf("ClientsAccepted %d, want at least %d", s.ClientsAccepted, min)
	}

	// The injector must have bitten, of every kind, or the test proves little.
	for _, miss := range inj.short() {
		t.Errorf("injector: %s", miss)
	}
	inj.mu.Lock()
	defer inj.mu.Unlock()
	if inj.acceptMFIL > 0 {
		rig.Log.waitFor(t, 2*time.Second, "the EMFILE retry log", func(rec logRecord) bool {
			return rec.str("msg") == "accept failed; retrying in 100ms" && strings.Contains(rec.str("err"), "too many open files")
		})
	}
}

// TestSignalStorm sends SIGURG (the Go runtime's preemption signal, harmless
// to the program) to the relay's loop thread and to the process every 50 to
// 100 µs while checksummed traffic runs, so that epoll_wait, the guest's
// poll and the clients' runtime calls return EINTR for real. Nothing may be
// lost, and the loop thread must have been caught asleep in epoll_wait by a
// good number of the signals (each of those is an EINTR the reactor had to
// absorb).
func TestSignalStorm(t *testing.T) {
	rig := newEchoRig(t, relaytest.PortRing, 1<<16, nil)
	tid := relay.LoopTID(rig.R)
	if tid < 0 {
		t.Fatal("the loop did not tell its thread id")
	}
	dur := 1500 * time.Millisecond
	until := time.Now().Add(dur)

	// A nanosleep of 50-100 µs takes about 200 µs on a VM's timers, so
	// three senders, each sleeping that long between signals, keep the
	// loop thread's signals 50-100 µs apart on average.
	const senders = 3
	stop := make(chan struct{})
	var sent, asleep, inSyscall atomic.Uint64
	var storm sync.WaitGroup
	for k := range senders {
		storm.Add(1)
		go func() {
			defer storm.Done()
			runtime.LockOSThread() // nanosleep blocks this thread, not the scheduler
			defer runtime.UnlockOSThread()
			unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0) // this thread only; it ends with the goroutine
			pid := os.Getpid()
			rng := rand.New(rand.NewPCG(uint64(pid), uint64(k)))
			status, err := os.Open(fmt.Sprintf("/proc/self/task/%d/syscall", tid))
			if err != nil {
				t.Errorf("loop thread status: %v", err)
				return
			}
			defer status.Close()
			buf := make([]byte, 64)
			for {
				select {
				case <-stop:
					return
				default:
				}
				ts := unix.NsecToTimespec(int64(50*time.Microsecond) + rng.Int64N(int64(50*time.Microsecond)))
				unix.Nanosleep(&ts, nil) // EINTR from the storm itself just shortens a gap
				nr := -1
				if n, err := status.ReadAt(buf, 0); n > 0 && (err == nil || errors.Is(err, io.EOF)) {
					nr = syscallNr(buf[:n])
				}
				if err := unix.Tgkill(pid, tid, unix.SIGURG); err != nil {
					t.Errorf("tgkill: %v", err)
					return
				}
				unix.Kill(pid, unix.SIGURG)
				sent.Add(1)
				if nr >= 0 {
					inSyscall.Add(1)
					if isEpollWait(nr) {
						asleep.Add(1)
					}
				}
			}
		}()
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	var streamed streamTotals
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := rig.Env.DialErr(5 * time.Second)
			if err != nil {
				t.Errorf("streamer %d: dial: %v", w, err)
				return
			}
			defer cl.Conn.Close()
			// Small windows: the loop runs dry and sleeps in epoll_wait
			// between bursts, where the signals find it.
			tot, err := streamChecked(cl, uint64(w), func() bool { return time.Now().Before(until) }, 1+w, w%2 == 0)
			mu.Lock()
			streamed.add(tot)
			mu.Unlock()
			if err != nil {
				t.Errorf("streamer %d: %v", w, err)
			}
		}()
	}
	wg.Wait()
	close(stop)
	storm.Wait()
	if t.Failed() {
		return
	}
	r := rig.R
	relaytest.Eventually(t, 5*time.Second, "every client to be gone", func() bool { return r.Stats().ClientsActive == 0 })
	s := r.Stats()
	ls := relay.ReactorStats(r)
	t.Logf("%v: %d frames (%.1f MB) checked end to end under %d SIGURGs to the loop thread (one every %v on average, and as many to the process); "+
		"the loop thread was in a blocking syscall for %d of them, in epoll_wait for %d; loop wakeups %d",
		dur, streamed.frames, float64(streamed.bytes)/1e6, sent.Load(), (dur / time.Duration(max(sent.Load(), 1))).Round(time.Microsecond),
		inSyscall.Load(), asleep.Load(), ls.Wakeups)
	if s.FramesToGuest != streamed.frames || s.FramesToClient != streamed.frames || s.BytesToGuest != streamed.bytes {
		t.Errorf("relay counted %d frames / %d bytes to the guest and %d frames back, want %d / %d",
			s.FramesToGuest, s.BytesToGuest, s.FramesToClient, streamed.frames, streamed.bytes)
	}
	if bad := rig.Echo.bad.Load(); bad != 0 {
		t.Errorf("the guest got %d corrupted frames", bad)
	}
	if sent.Load() < 3000 {
		t.Errorf("only %d signals sent in %v", sent.Load(), dur)
	}
	if _, known := epollWaitNrs[runtime.GOARCH]; known && asleep.Load() < 100 {
		t.Errorf("only %d signals found the loop thread in epoll_wait; the storm did not test EINTR there", asleep.Load())
	}
}

// epollWaitNrs are the syscall numbers the loop's wait may show in
// /proc/<tid>/syscall: epoll_wait or epoll_pwait on amd64 (x/sys v0.49
// makes epoll_pwait), epoll_pwait on arm64. (Seen otherwise: futex, while
// the locked thread waits for the scheduler.)
var epollWaitNrs = map[string][]int{"amd64": {232, 281}, "arm64": {22}}

func isEpollWait(nr int) bool {
	for _, n := range epollWaitNrs[runtime.GOARCH] {
		if n == nr {
			return true
		}
	}
	return false
}

// syscallNr parses /proc/<tid>/syscall: the number of the syscall the
// thread is blocked in, or -1 if it is running.
func syscallNr(b []byte) int {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return -1
	}
	return n
}

// echoRig is a reactor relay in front of a checking echo guest, with its log
// captured.
type echoRig struct {
	R    *relay.Relay
	Env  *relaytest.Env // Socket only: for DialErr
	Log  *logCapture
	Echo *checkingEcho
}

// ports are the guest ports the reactor relay serves.
var ports = []relaytest.Port{relaytest.PortRing, relaytest.PortFD}

func newEchoRig(t *testing.T, port relaytest.Port, capacity int, tweak func(*relay.Options)) *echoRig {
	t.Helper()
	dir, err := os.MkdirTemp("", "sysfault")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	log := &logCapture{}
	o := relay.Options{Socket: filepath.Join(dir, "s"), Logger: log.logger(), DrainTimeout: time.Second}
	var end guestEnd
	switch port {
	case relaytest.PortFD:
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		o.Guest = os.NewFile(uintptr(fds[0]), "guest-console")
		end = &sockEnd{fd: fds[1], rng: rand.New(rand.NewPCG(uint64(fds[1]), 7))}
	default:
		c, err := ring.NewConsole(capacity)
		if err != nil {
			t.Fatal(err)
		}
		o.Console = c
		end = ringEnd{c}
	}
	if tweak != nil {
		tweak(&o)
	}
	r, err := relay.New(o)
	if err != nil {
		t.Fatal(err)
	}
	echo := startCheckingEcho(end)
	ctx, cancel := context.WithCancel(context.Background())
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if err := r.WaitReady(wctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-runDone:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
			return
		}
		echo.stop(end)
	})
	return &echoRig{R: r, Env: &relaytest.Env{Socket: o.Socket}, Log: log, Echo: echo}
}

// guestEnd is the guest's side of a port, for the checking echo.
type guestEnd interface {
	read(p []byte) (int, error) // blocks
	write(p []byte) error       // all of p, blocking
	close()                     // ends both directions: read and write fail
	free()                      // once the echo has returned
}

type ringEnd struct{ c *ring.Console }

func (e ringEnd) read(p []byte) (int, error) { return e.c.Rx.Read(p, time.Time{}) }
func (e ringEnd) write(p []byte) error {
	_, err := e.c.Backend().Write(p)
	return err
}
func (e ringEnd) close() {
	e.c.Backend().CloseRead()
	e.c.Backend().CloseWrite()
}
func (e ringEnd) free() { e.c.Close() }

// sockEnd is the guest's end of a socketpair. It writes in random pieces so
// that the relay sees frames split at every point.
type sockEnd struct {
	fd  int
	rng *rand.Rand
}

func (e *sockEnd) read(p []byte) (int, error) {
	for {
		n, err := unix.Read(e.fd, p)
		if err == unix.EINTR {
			continue
		}
		if n == 0 && err == nil {
			return 0, io.EOF
		}
		return n, err
	}
}

func (e *sockEnd) write(p []byte) error {
	for len(p) > 0 {
		k := len(p)
		if e.rng.IntN(4) == 0 {
			k = 1 + e.rng.IntN(min(len(p), 64))
		}
		n, err := unix.Write(e.fd, p[:k])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

func (e *sockEnd) close() { unix.Shutdown(e.fd, unix.SHUT_RDWR) }
func (e *sockEnd) free()  { unix.Close(e.fd) }

// checkingEcho plays the guest: it reflects every host→guest frame back
// unchanged, as guest.Echo does, but reassembles frames first and checks
// every exec stdin payload of the tests' form (sequence number, CRC-32 of
// the rest) on the way. Frames the relay makes itself (SIGKILLs) are
// counted, not reflected.
type checkingEcho struct {
	frames, bytes, bad, kills atomic.Uint64
	done                      chan struct{}
}

func startCheckingEcho(end guestEnd) *checkingEcho {
	e := &checkingEcho{done: make(chan struct{})}
	end.write(guest.DefaultReady())
	go func() {
		defer close(e.done)
		sc := frame.NewScanner(2 * frame.MaxFrame)
		for {
			n, err := end.read(sc.Space())
			if err != nil {
				return
			}
			sc.Commit(n)
			for {
				f, err := sc.Next()
				if errors.Is(err, frame.ErrIncomplete) {
					break
				}
				if err != nil {
					e.bad.Add(1)
					return
				}
				p, err := frame.Peek(f.Body)
				switch {
				case err != nil:
					e.bad.Add(1)
				case p.Type == frame.TypeExecSignal:
					e.kills.Add(1)
					continue
				case p.Type == frame.TypeExecStdin && !payloadOK(p.Data):
					e.bad.Add(1)
				}
				e.frames.Add(1)
				e.bytes.Add(uint64(len(f.Raw)))
				if err := end.write(f.Raw); err != nil {
					return
				}
			}
		}
	}()
	return e
}

// stop ends the guest once the relay has stopped.
func (e *checkingEcho) stop(end guestEnd) {
	end.close()
	<-e.done
	end.free()
}

// payloadOK checks a test payload: [seq u32][crc32 of the rest u32][rest].
func payloadOK(d []byte) bool {
	return len(d) >= 8 && binary.BigEndian.Uint32(d[4:]) == crc32.ChecksumIEEE(d[8:])
}

// pool is random filler for payloads.
var pool = func() []byte {
	b := make([]byte, 256<<10)
	rand.NewChaCha8([32]byte{7}).Read(b)
	return b
}()

// testFrame builds an exec stdin frame under id with a checked payload of
// size bytes (at least 8).
func testFrame(rng *rand.Rand, id, seq uint32, size int) []byte {
	data := make([]byte, max(size, 8))
	for i := 8; i < len(data); {
		off := rng.IntN(len(pool) / 2)
		i += copy(data[i:], pool[off:])
	}
	binary.BigEndian.PutUint32(data, seq)
	binary.BigEndian.PutUint32(data[4:], crc32.ChecksumIEEE(data[8:]))
	raw, err := frame.AppendMessage(nil, id, frame.TypeExecStdin, frame.ExecStdin{Data: data})
	if err != nil {
		panic(err)
	}
	return raw
}

type streamTotals struct {
	frames, bytes           uint64
	conns, vanished, resets int
}

func (s *streamTotals) add(o streamTotals) {
	s.frames += o.frames
	s.bytes += o.bytes
	s.conns += o.conns
	s.vanished += o.vanished
	s.resets += o.resets
}

// streamChecked pipelines frames of 8 B to 64 KiB through the echo guest
// while more says so, at most window in flight, and checks that each comes
// back byte for byte, in order. With split, frames are written in up to
// three pieces cut at random points (often inside the 9-byte header). It
// returns what was sent and came back.
func streamChecked(cl *relaytest.Client, seed uint64, more func() bool, window int, split bool) (streamTotals, error) {
	rng := rand.New(rand.NewPCG(seed, 42))
	inflight := make(chan []byte, window)
	quit := make(chan struct{})
	werr := make(chan error, 1)
	go func() {
		defer close(inflight)
		for seq := uint32(0); more(); seq++ {
			raw := testFrame(rng, cl.ID(1+seq%1000), seq, 8+rng.IntN(8<<rng.IntN(14)))
			select {
			case inflight <- raw:
			case <-quit:
				return
			}
			pieces := [][]byte{raw}
			if split && rng.IntN(2) == 0 {
				cut := 1 + rng.IntN(len(raw)-1)
				if rng.IntN(3) == 0 {
					cut = 1 + rng.IntN(frame.HeaderSize)
				}
				pieces = [][]byte{raw[:cut], raw[cut:]}
				if len(raw)-cut > 1 && rng.IntN(2) == 0 {
					cut2 := cut + 1 + rng.IntN(len(raw)-cut-1)
					pieces = [][]byte{raw[:cut], raw[cut:cut2], raw[cut2:]}
				}
			}
			cl.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			for _, p := range pieces {
				if _, err := cl.Conn.Write(p); err != nil {
					werr <- fmt.Errorf("write frame %d: %w", seq, err)
					return
				}
			}
		}
	}()
	var tot streamTotals
	for raw := range inflight {
		got, err := cl.Recv(10 * time.Second)
		if err != nil {
			close(quit)
			select {
			case err2 := <-werr:
				return tot, err2
			default:
			}
			return tot, fmt.Errorf("after %d frames back: %w", tot.frames, err)
		}
		if !bytes.Equal(got, raw) {
			close(quit)
			m, _ := frame.Decode(got)
			var in frame.ExecStdin
			m.Into(&in)
			var seq uint32
			if len(in.Data) >= 4 {
				seq = binary.BigEndian.Uint32(in.Data)
			}
			return tot, fmt.Errorf("frame %d: got back %d bytes (id %d, seq %d, payload intact %v), want %d bytes",
				tot.frames, len(got), m.ID, seq, payloadOK(in.Data), len(raw))
		}
		tot.frames++
		tot.bytes += uint64(len(raw))
	}
	select {
	case err := <-werr:
		return tot, err
	default:
	}
	return tot, nil
}

// churn connects and leaves while more says so: two of three connections
// read the handshake, send a burst of complete frames and a partial one in
// one write and hang up at once (echoes unread); the third connects and
// hangs up before the handshake. It returns the complete frames sent.
func churn(e *relaytest.Env, seed uint64, more func() bool) (streamTotals, error) {
	rng := rand.New(rand.NewPCG(seed, 43))
	var tot streamTotals
	for i := 0; more(); i++ {
		if i%3 == 2 {
			c, err := net.Dial("unix", e.Socket)
			if err != nil {
				return tot, err
			}
			c.Close()
			tot.conns++
			tot.vanished++
			continue
		}
		cl, err := e.DialErr(5 * time.Second)
		if err != nil {
			return tot, fmt.Errorf("dial: %w", err)
		}
		tot.conns++
		var burst []byte
		for n := range 1 + rng.IntN(24) {
			raw := testFrame(rng, cl.ID(uint32(1+n)), uint32(n), 8+rng.IntN(16<<rng.IntN(11)))
			burst = append(burst, raw...)
			tot.frames++
			tot.bytes += uint64(len(raw))
		}
		last := testFrame(rng, cl.ID(999), 999, 8+rng.IntN(8<<10))
		burst = append(burst, last[:1+rng.IntN(len(last)-1)]...)
		cl.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err = cl.Conn.Write(burst)
		cl.Conn.Close()
		if err != nil {
			return tot, fmt.Errorf("write burst: %w", err)
		}
	}
	return tot, nil
}

// logCapture collects a relay's JSON log lines.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCapture) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type logRecord map[string]any

func (r logRecord) str(k string) string {
	v, ok := r[k]
	if !ok {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

func (r logRecord) num(k string) float64 {
	f, _ := r[k].(float64)
	return f
}

func (l *logCapture) records() []logRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []logRecord
	for _, line := range bytes.Split(l.buf.Bytes(), []byte("\n")) {
		var rec logRecord
		if len(line) > 0 && json.Unmarshal(line, &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

// waitFor returns the first record matching match, failing the test if none
// has been logged within timeout (the relay logs through a goroutine).
func (l *logCapture) waitFor(t testing.TB, timeout time.Duration, what string, match func(logRecord) bool) logRecord {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, rec := range l.records() {
			if match(rec) {
				return rec
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log record for %s within %v; log:\n%s", what, timeout, l.String())
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *logCapture) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
