package host

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/relay"
)

// TestGuestGone: a sandbox whose guest goes away turns guest_gone, its
// socket and descriptors go, its entry stays, and its neighbour on the
// same loop serves on.
func TestGuestGone(t *testing.T) {
	dir := shortDir(t)
	_, c := startHost(t, dir, Options{Loops: 1})
	gone, stays := newGuest(t, dir, "gone.console", echoGuest), newGuest(t, dir, "stays.console", echoGuest)
	for name, g := range map[string]*testGuest{"gone": gone, "stays": stays} {
		if _, err := c.Add(bg, name, Spec{Guest: g.spec(), Socket: filepath.Join(dir, name+".sock"), ExecLog: filepath.Join(dir, name+".log")}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "both to serve", func() bool {
		return state(t, c, "gone").State == StateServing && state(t, c, "stays").State == StateServing
	})
	gone.stop()
	eventually(t, "guest_gone", func() bool { return state(t, c, "gone").State == StateGuestGone })
	in := state(t, c, "gone")
	if in.Error == "" || in.Loop != 0 {
		t.Fatalf("a guest_gone sandbox: %+v", in)
	}
	eventually(t, "the guest_gone sandbox's socket to go", func() bool {
		_, err := os.Stat(filepath.Join(dir, "gone.sock"))
		return errors.Is(err, fs.ErrNotExist)
	})
	// Its exec.log is flushed and closed with the relay, before the entry
	// is removed.
	eventually(t, "the guest_gone sandbox's exec.log to be closed", func() bool {
		return !openByUs(t, filepath.Join(dir, "gone.log", "exec.log"))
	})
	if !openByUs(t, filepath.Join(dir, "stays.log", "exec.log")) {
		t.Fatal("the neighbour's exec.log was closed too")
	}
	roundTrip(t, filepath.Join(dir, "stays.sock"))
	if saved, _ := readState(filepath.Join(dir, "state.json")); len(saved) != 2 {
		t.Fatalf("the state file lost a guest_gone sandbox: %+v", saved)
	}
	if err := c.Remove(bg, "gone"); err != nil {
		t.Fatalf("DELETE of a guest_gone sandbox: %v", err)
	}
}

// TestNeverReady: a guest that never sends core.ready times out alone: its
// sandbox turns guest_gone naming core.ready, and a neighbour on the same
// loop is served throughout.
func TestNeverReady(t *testing.T) {
	dir := shortDir(t)
	_, c := startHost(t, dir, Options{Loops: 1})
	silent, echo := newGuest(t, dir, "silent.console", silentGuest), newGuest(t, dir, "echo.console", echoGuest)
	start := time.Now()
	in, err := c.Add(bg, "silent", Spec{Guest: silent.spec(), Socket: filepath.Join(dir, "silent.sock"), ReadyTimeout: "400ms"})
	if err != nil {
		t.Fatal(err)
	}
	if in.State != StateWaiting {
		t.Fatalf("a sandbox whose guest has not sent core.ready: %+v", in)
	}
	if _, err := c.Add(bg, "echo", Spec{Guest: echo.spec(), Socket: filepath.Join(dir, "echo.sock")}); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, filepath.Join(dir, "echo.sock"))
	eventually(t, "the ready timeout", func() bool { return state(t, c, "silent").State == StateGuestGone })
	if d := time.Since(start); d < 350*time.Millisecond {
		t.Fatalf("timed out after %v, want 400ms", d)
	}
	if in := state(t, c, "silent"); !strings.Contains(in.Error, "core.ready") {
		t.Fatalf("the error of a never-ready sandbox: %+v", in)
	}
	// The state turns before the relay has quite finished.
	eventually(t, "the never-ready sandbox's socket to go", func() bool {
		_, err := os.Stat(filepath.Join(dir, "silent.sock"))
		return errors.Is(err, fs.ErrNotExist)
	})
	roundTrip(t, filepath.Join(dir, "echo.sock"))
}

// staleSocket leaves at path what a daemon killed with SIGKILL leaves: a
// socket file nobody listens on.
func staleSocket(t testing.TB, path string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
}

// TestRestore: a daemon closed (SIGTERM) removes its sockets and keeps the
// state file; the next one restores each sandbox from it, replacing a
// stale socket, and keeps one whose guest is gone as guest_gone.
func TestRestore(t *testing.T) {
	dir := shortDir(t)
	ga, gb := newGuest(t, dir, "a.console", echoGuest), newGuest(t, dir, "b.console", echoGuest)
	statePath := filepath.Join(dir, "state.json")
	h1, err := New(Options{Loops: 2, StatePath: statePath})
	if err != nil {
		t.Fatal(err)
	}
	for name, g := range map[string]*testGuest{"a": ga, "b": gb} {
		if _, err := h1.Add(bg, name, Spec{Guest: g.spec(), Socket: filepath.Join(dir, name+".sock"), Handshake: "0.4"}); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip(t, filepath.Join(dir, "a.sock"))
	h1.Close()
	for _, name := range []string{"a.sock", "b.sock"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s after Close: %v", name, err)
		}
	}
	// The VM of b is gone; a's daemon was killed: its socket is stale.
	gb.stop()
	staleSocket(t, filepath.Join(dir, "a.sock"))

	h2, c := startHost(t, dir, Options{StatePath: statePath})
	if h2.Loops() != 2 {
		t.Fatal(h2.Loops())
	}
	eventually(t, "a to serve again", func() bool { return state(t, c, "a").State == StateServing })
	roundTrip(t, filepath.Join(dir, "a.sock"))
	b := state(t, c, "b")
	if b.State != StateGuestGone || !strings.Contains(b.Error, "b.console") || b.Loop != -1 || b.Handshake != "0.4" {
		t.Fatalf("a restored sandbox whose guest is gone: %+v", b)
	}
	if saved, _ := readState(statePath); len(saved) != 2 {
		t.Fatalf("state after the restore: %+v", saved)
	}
	// A broken state file stops the next daemon instead of being
	// overwritten.
	os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"version": 1, "sandboxes": [`), 0o600)
	if _, err := New(Options{Loops: 1, StatePath: filepath.Join(dir, "bad.json")}); err == nil || !strings.Contains(err.Error(), "will not overwrite") {
		t.Fatalf("New with a broken state file: %v", err)
	}
}

// TestBudgets: a sandbox whose client does not read while its guest floods
// it is held to its own budgets (alone, then under a host-wide budget
// smaller than its own) and its client evicted; its neighbour on the same
// loop is not charged and serves throughout.
func TestBudgets(t *testing.T) {
	for _, hostBudget := range []int64{0, 2 << 20} {
		t.Run(fmt.Sprintf("host=%d", hostBudget), func(t *testing.T) { testBudgets(t, hostBudget) })
	}
}

func testBudgets(t *testing.T, hostBudget int64) {
	dir := shortDir(t)
	h, c := startHost(t, dir, Options{Loops: 1, MemoryBudget: hostBudget,
		Relay: relay.Options{ClientBuffer: frame.MaxFrame, OutputBudget: frame.MaxFrame, EvictGrace: 200 * time.Millisecond}})
	flood, echo := newGuest(t, dir, "flood.console", floodGuest), newGuest(t, dir, "echo.console", echoGuest)
	if _, err := c.Add(bg, "flood", Spec{Guest: flood.spec(), Socket: filepath.Join(dir, "flood.sock")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Add(bg, "echo", Spec{Guest: echo.spec(), Socket: filepath.Join(dir, "echo.sock")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "flood to serve", func() bool { return state(t, c, "flood").State == StateServing })
	// The flooded client: slot 0, id 1, and it reads nothing.
	conn, err := net.Dial("unix", filepath.Join(dir, "flood.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.UnixConn).SetReadBuffer(4096)
	deadline := time.Now().Add(10 * time.Second)
	for state(t, c, "flood").Counters["evictions"] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the flooded client was never evicted: %+v", state(t, c, "flood"))
		}
		if used := h.Budget().Used(); hostBudget > 0 && used > hostBudget {
			t.Fatalf("the host budget lent %d of %d", used, hostBudget)
		}
		roundTrip(t, filepath.Join(dir, "echo.sock"))
	}
	if in := state(t, c, "echo"); in.Counters["evictions"] != 0 || in.Counters["guest_stall_nanos"] != 0 {
		t.Fatalf("the neighbour was charged: %+v", in.Counters)
	}
	eventually(t, "the stall to be counted", func() bool { return state(t, c, "flood").Counters["guest_stall_nanos"] > 0 })
	if in := state(t, c, "flood"); (hostBudget > 0) != (h.Budget().Refused() > 0) {
		t.Fatalf("the flood was not held by the budgets: host refused %d, %+v", h.Budget().Refused(), in.Counters)
	}
	if st := h.Stats(); st.BudgetMax != hostBudget || st.Sandboxes[StateServing] != 2 {
		t.Fatalf("host stats: %+v", st)
	}
	roundTrip(t, filepath.Join(dir, "echo.sock"))
}

// TestOutOfDescriptors: with no descriptor to spare, an Add fails at once
// with a 503 that names RLIMIT_NOFILE, rather than spending the dial's
// timeout on EMFILE, and leaves nothing behind.
func TestOutOfDescriptors(t *testing.T) {
	dir := shortDir(t)
	h, err := New(Options{Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	g := newGuest(t, dir, "g.console", echoGuest)
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir("/proc/self/fd")
	// ReadDir's own descriptor is closed again: what is open now is
	// len(ents)-1, and the lowest free number is at most that.
	tight := old
	tight.Cur = uint64(len(ents) - 1)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &tight); err != nil {
		t.Fatal(err)
	}
	// Fill the holes below the limit too: no descriptor to spare at all.
	var fillers []int
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			break
		}
		fillers = append(fillers, fd)
	}
	start := time.Now()
	_, err = h.Add(bg, "n", Spec{Guest: g.spec(), Socket: filepath.Join(dir, "n.sock")})
	for _, fd := range fillers {
		unix.Close(fd)
	}
	unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	if Status(err) != 503 || !strings.Contains(err.Error(), "RLIMIT_NOFILE") || time.Since(start) > 2*time.Second {
		t.Fatalf("Add without descriptors: %v (status %d) after %v", err, Status(err), time.Since(start))
	}
	if len(h.List()) != 0 {
		t.Fatal("an entry was left")
	}
	if _, err := os.Lstat(filepath.Join(dir, "n.sock")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a socket was left")
	}
	if _, err := h.Add(bg, "n", Spec{Guest: g.spec(), Socket: filepath.Join(dir, "n.sock")}); err != nil {
		t.Fatalf("Add once descriptors are back: %v", err)
	}
}

// TestRaiseNoFile: the soft limit reaches the hard one and, as root, the
// hard one reaches fs.nr_open, so 10,000 sandboxes fit.
func TestRaiseNoFile(t *testing.T) {
	soft, hard, err := RaiseNoFile()
	var rl unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &rl)
	if soft == 0 || soft != hard || rl.Cur != soft || rl.Max != hard {
		t.Fatalf("RaiseNoFile = %d, %d, %v; limit now %+v", soft, hard, err, rl)
	}
	b, rerr := os.ReadFile("/proc/sys/fs/nr_open")
	if os.Geteuid() != 0 || rerr != nil {
		return
	}
	// Root without CAP_SYS_RESOURCE (a container) cannot raise the hard
	// limit: that must be said, not passed over.
	if nrOpen := strings.TrimSpace(string(b)); strconv.FormatUint(hard, 10) != nrOpen &&
		(err == nil || !strings.Contains(err.Error(), "not raised to fs.nr_open "+nrOpen)) {
		t.Fatalf("as root: hard limit %d, fs.nr_open %s, error %v", hard, nrOpen, err)
	}
	t.Logf("RLIMIT_NOFILE %d/%d (%v)", soft, hard, err)
}

// TestCloseEndsDials: closing the daemon does not wait out the dial of an
// Add whose guest is not there yet; the Add fails and leaves nothing.
func TestCloseEndsDials(t *testing.T) {
	dir := shortDir(t)
	h, err := New(Options{Loops: 1, DialTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	added := make(chan error, 1)
	go func() {
		_, err := h.Add(bg, "late", Spec{Guest: "unix:" + filepath.Join(dir, "not-yet"), Socket: filepath.Join(dir, "late.sock")})
		added <- err
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	h.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if err := <-added; Status(err) != 502 {
		t.Fatalf("the Add under way: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "late.sock")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a socket was left")
	}
}

// openByUs reports whether this process has path open.
func openByUs(t *testing.T, path string) bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && l == path {
			return true
		}
	}
	return false
}
