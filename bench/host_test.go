package bench

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
)

// Host10KEnv, set to 1, adds the 10,000-sandbox scenario to BenchmarkHost
// (a minute or more, and RLIMIT_NOFILE above 20,000: root).
const Host10KEnv = "RELAY_BENCH_HOST10K"

// BenchmarkHost measures issue 12's targets against `bin/relay host`
// ($RELAY_BIN or ../bin/relay), each scenario once per run (run it with
// -benchtime 1x and -count for rounds; scripts/bench-host.sh does):
//
//	Host/idle/sandboxes=1000/impl=host         KiB/sandbox, threads, cpus, ...
//	Host/rt/neighbours=999/size=64/impl=host|serve          p50-ns, p99-ns, p99.9-ns
//	Host/stream/sandboxes=64/size=64K/impl=host|serve       MB/s, rss-MiB, ...
//	Host/isolation/flood=16x128/impl=host|serve            idle-p99-ns, flood-p99-ns, p99-ratio
//	Host/churn/sandboxes=1000/impl=host        fd-change-%, rss-change-%, ...
//	Host/idle/sandboxes=10000/impl=host        with RELAY_BENCH_HOST10K=1
//
// A scenario with two sides measures both in alternating blocks and then
// reports each as a sub-benchmark of its own, so that `benchstat -col
// /impl` puts them side by side.
func BenchmarkHost(b *testing.B) {
	relay, err := relayBinary(Reactor)
	if err != nil {
		b.Skip(err)
	}
	var env []string
	if mode := os.Getenv(fakeDaemonEnv); mode != "" {
		env = []string{fakeHostEnv + "=" + mode}
	} else if out, _ := exec.Command(relay, "help", "host").CombinedOutput(); bytes.Contains(out, []byte(`unknown command "host"`)) {
		// A tree from before the daemon: the rest of `make bench` stands.
		b.Skipf("%s has no host command (issue 12's daemon)", relay)
	}
	hb := newHostBench(b, relay, env, DefaultHostParams)
	hb.Log = b.Logf
	p := hb.P
	one := func(name string, run func() (Figures, error)) {
		b.Run(name+"/impl="+HostImpl, func(b *testing.B) {
			f, err := run()
			if err != nil {
				b.Fatal(err)
			}
			reportFigures(b, f)
		})
	}
	two := func(name string, run func() (map[string]Figures, error)) {
		b.Run(name, func(b *testing.B) {
			res, err := run()
			if err != nil {
				b.Fatal(err)
			}
			for _, impl := range []string{HostImpl, ServeImpl} {
				b.Run("impl="+impl, func(b *testing.B) { reportFigures(b, res[impl]) })
			}
		})
	}
	one(fmt.Sprintf("idle/sandboxes=%d", p.Idle), func() (Figures, error) { return hb.Idle(p.Idle) })
	two(fmt.Sprintf("rt/neighbours=%d/size=64", p.Idle-1), hb.RoundTrip)
	two(fmt.Sprintf("stream/sandboxes=%d/size=%s", p.Streams, sizeName(p.StreamSize)), hb.Stream)
	two(fmt.Sprintf("isolation/flood=%dx%d", p.FloodClients, p.FloodSize), hb.Isolation)
	one(fmt.Sprintf("churn/sandboxes=%d", p.Churn), hb.Churn)
	if os.Getenv(Host10KEnv) == "1" {
		n := 10000
		// A daemon needs two descriptors a sandbox. Where RLIMIT_NOFILE
		// cannot be raised to that (root without CAP_SYS_RESOURCE, as in
		// a container), measure as many as fit, and say so: the figure's
		// "sandboxes" is the count measured.
		if lim, err := RaiseFileLimit(); err == nil && lim.Cur < hostNofile(n) {
			fit := int((lim.Cur - 256) / 2)
			b.Logf("10,000 sandboxes need about %d descriptors; RLIMIT_NOFILE is %d (hard %d) and cannot be raised here: measuring %d",
				hostNofile(n), lim.Cur, lim.Max, fit)
			n = fit
		}
		one("idle/sandboxes=10000", func() (Figures, error) { return hb.Idle(n) })
	}
}

// newHostBench returns a HostBench in a fresh directory; with env, its
// daemon is the test binary with env added (the stand-in, fakeHostEnv).
// fakeDaemonEnv, set to "loop" (or a bin/relay path), runs BenchmarkHost
// against the stand-in daemon (fakeHostEnv) instead of `relay host`: a way to
// try the harness at full size on a tree without the daemon.
const fakeDaemonEnv = "RELAY_BENCH_FAKE_DAEMON"

func newHostBench(tb testing.TB, relay string, env []string, p HostParams) *HostBench {
	tb.Helper()
	self, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	// Short: Unix socket paths have room for 107 bytes.
	dir, err := os.MkdirTemp("", "hostbench")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	hb := &HostBench{Relay: relay, Self: self, Dir: dir, P: p}
	if env != nil {
		hb.Daemon, hb.HostEnv = self, env
	}
	return hb
}

func sizeName(n int) string {
	if n%kib == 0 {
		return fmt.Sprintf("%dK", n/kib)
	}
	return fmt.Sprint(n)
}

func reportFigures(b *testing.B, f Figures) {
	if len(f) == 0 {
		b.Fatal("no figures")
	}
	for _, unit := range slices.Sorted(func(yield func(string) bool) {
		for u := range f {
			if !yield(u) {
				return
			}
		}
	}) {
		b.ReportMetric(f[unit], unit)
	}
}

// dialGuest connects to one echo guest and reads its core.ready.
func dialGuest(t *testing.T, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	head := make([]byte, frame.LenSize)
	if _, err := readFull(c, head); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	n, err := frame.Len(head)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	ready := append(head, make([]byte, n-frame.LenSize)...)
	if _, err := readFull(c, ready[frame.LenSize:]); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	m, err := frame.Decode(ready)
	if err != nil || m.Type != frame.TypeReady {
		t.Fatalf("%s: first frame %v %v, want core.ready", path, m.TypeName, err)
	}
	return c
}

func readFull(c net.Conn, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := c.Read(p[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// echoes sends frames of size bytes and checks that each comes back whole.
func echoes(t *testing.T, c net.Conn, size, count int) {
	t.Helper()
	f, err := ExactFrame(frame.TypeExecStdin, 7, size)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, size)
	for range count {
		if _, err := c.Write(f); err != nil {
			t.Fatal(err)
		}
		if _, err := readFull(c, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f) {
			t.Fatal("the echo differs from the frame sent")
		}
	}
}

// The many-guest process answers on every path with core.ready and echoes,
// frames larger than its read buffer included, and serves a path again
// after a connection ends (a daemon's sandbox removed and added again).
func TestEchoGuests(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := shortTempDir(t)
	const n = 200
	g, err := StartEchoGuests(self, dir, n)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	if len(g.Paths) != n {
		t.Fatalf("%d paths, want %d", len(g.Paths), n)
	}
	conns := make([]net.Conn, 0, n)
	for _, p := range g.Paths {
		c := dialGuest(t, p)
		echoes(t, c, 64, 2)
		conns = append(conns, c)
	}
	// Every connection stays up while the others are served.
	if len(g.Pids()) != 1 {
		t.Fatalf("%d guests in %d processes, want one", n, len(g.Pids()))
	}
	fds, err := CountFDs(g.Pids()[0])
	if err != nil {
		t.Fatal(err)
	}
	if fds < 2*n {
		t.Fatalf("the guests' process has %d descriptors with %d listeners and %d connections", fds, n, n)
	}
	echoes(t, conns[0], 300<<10, 3)
	for _, c := range conns {
		c.Close()
	}
	for range 2 {
		c := dialGuest(t, g.Paths[n-1])
		echoes(t, c, 1024, 1)
		c.Close()
	}
	if !g.Alive() {
		t.Fatalf("the guests exited: %s", g.LogTail())
	}
}

// More guests than one process's descriptor limit allows are spread over
// more processes, each of which answers.
func TestEchoGuestsSpread(t *testing.T) {
	if testing.Short() {
		t.Skip("listens on some 10,000 sockets")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	n := guestsPerProcess() + 2
	if n > 30000 {
		t.Skipf("RLIMIT_NOFILE allows %d guests a process", n-2)
	}
	g, err := StartEchoGuests(self, shortTempDir(t), n)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	if len(g.Pids()) != 2 {
		t.Fatalf("%d guests in %d processes, want 2", n, len(g.Pids()))
	}
	for _, i := range []int{0, n - 1} {
		c := dialGuest(t, g.Paths[i])
		echoes(t, c, 64, 1)
		c.Close()
	}
}

// Run out of descriptors, the many-guest process says so with the limit it
// hit, and StartEchoGuests returns that instead of waiting.
func TestEchoGuestsOutOfDescriptors(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	_, err = StartEchoGuests(self, shortTempDir(t), 100, NofileCapEnv+"=40")
	if err == nil {
		t.Fatal("100 guests started with RLIMIT_NOFILE 40")
	}
	for _, want := range []string{"out of file descriptors", "RLIMIT_NOFILE is 40", "too many open files"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestParseStatus(t *testing.T) {
	text := "Name:\trelay\nVmPeak:\t  900 kB\nVmHWM:\t   12800 kB\nVmRSS:\t   12600 kB\nThreads:\t8\n"
	m, err := parseStatus([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if m != (ProcMem{RSS: 12600, HWM: 12800, Threads: 8}) {
		t.Fatalf("parsed %+v", m)
	}
	for _, bad := range []string{
		"Name:\tzombie\nThreads:\t1\n",
		"VmHWM:\t1 kB\nVmRSS:\t12 MB\nThreads:\t1\n",
		"VmHWM:\t1 kB\nVmRSS:\tlots kB\nThreads:\t1\n",
		"VmHWM:\t1 kB\nVmRSS:\t1 kB\nThreads:\tmany\n",
	} {
		if _, err := parseStatus([]byte(bad)); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
	own, err := ReadProcMem(os.Getpid())
	if err != nil || own.RSS == 0 || own.HWM < own.RSS || own.Threads < 1 {
		t.Fatalf("own status: %+v, %v", own, err)
	}
	if pss, err := ReadPSS(os.Getpid()); err != nil || pss == 0 || pss > own.HWM {
		t.Fatalf("own PSS %d KiB (peak RSS %d KiB): %v", pss, own.HWM, err)
	}
	if n, err := parsePSS([]byte("Rss:  1768 kB\nPss:  332 kB\n")); n != 332 || err != nil {
		t.Fatalf("Pss: %d, %v", n, err)
	}
	for _, bad := range []string{"Rss: 1 kB\n", "Pss: 3 MB\n", "Pss: x kB\n"} {
		if _, err := parsePSS([]byte(bad)); err == nil {
			t.Errorf("parsed Pss out of %q", bad)
		}
	}
	if FileLimit(os.Getpid()) == "unknown" {
		t.Fatal("no RLIMIT_NOFILE in /proc/self/limits")
	}
}

func TestCountFDs(t *testing.T) {
	before, err := CountFDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	after, err := CountFDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after != before+1 {
		t.Fatalf("%d descriptors, then %d after opening one", before, after)
	}
	if _, err := CountFDs(-1); err == nil {
		t.Fatal("counted the descriptors of process -1")
	}
}

func TestPercentileRatioChange(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 1000; i++ {
		lat = append(lat, time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 500}, {99, 990}, {99.9, 999}, {100, 1000}, {0.01, 1}} {
		if got := Percentile(lat, c.p); got != c.want {
			t.Errorf("p%v of 1..1000 = %d, want %d", c.p, got, c.want)
		}
	}
	if got := Percentile([]time.Duration{5}, 99); got != 5 {
		t.Errorf("p99 of one sample = %d", got)
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("p50 of none = %d", got)
	}
	if Ratio(3, 2) != 1.5 || Ratio(1, 0) != 0 {
		t.Errorf("Ratio(3, 2) = %v, Ratio(1, 0) = %v", Ratio(3, 2), Ratio(1, 0))
	}
	if Change(105, 100) != 5 || Change(95, 100) != -5 || Change(1, 0) != 0 {
		t.Errorf("Change: %v %v %v", Change(105, 100), Change(95, 100), Change(1, 0))
	}
	if median([]float64{3, 1, 2}) != 2 || median([]float64{4, 1, 3, 2}) != 2.5 || median(nil) != 0 {
		t.Error("median")
	}
}

// parallel runs every index once and stops handing out work after an
// error, which it returns.
func TestParallel(t *testing.T) {
	var seen [100]atomic.Int32
	if err := parallel(100, 7, func(i int) error { seen[i].Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	for i := range seen {
		if seen[i].Load() != 1 {
			t.Fatalf("index %d ran %d times", i, seen[i].Load())
		}
	}
	boom := errors.New("boom")
	var ran atomic.Int32
	err := parallel(1000, 2, func(i int) error {
		ran.Add(1)
		if i == 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || ran.Load() > 10 {
		t.Fatalf("err %v after %d calls", err, ran.Load())
	}
}

// The control client speaks the API and turns an error answer into its
// message; the stand-in daemon serves it, and a duplicate, an unknown name
// and too many sandboxes come back as the daemon's 4xx messages.
func TestControl(t *testing.T) {
	relay := buildRelay(t)
	hb := newHostBench(t, relay, []string{fakeHostEnv + "=" + relay}, HostParams{})
	s, err := hb.scene("ctl", 2, HostConfig{MaxSandboxes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if _, err := s.putAll(0, 1, 1); err != nil {
		t.Fatal(err)
	}
	sbs, err := s.host.Control.List()
	if err != nil || len(sbs) != 1 || sbs[0].Name != "sb0" || sbs[0].State != "serving" {
		t.Fatalf("list: %+v, %v", sbs, err)
	}
	var api *APIError
	err = s.host.Control.Put("sb0", SandboxSpec{Guest: "unix:" + s.guests.Paths[0], Socket: s.socket(0)})
	if !errors.As(err, &api) || api.Status != 409 || api.Message != `sandbox "sb0" exists` {
		t.Fatalf("duplicate PUT: %v", err)
	}
	err = s.host.Control.Put("sb1", SandboxSpec{Guest: "unix:" + s.guests.Paths[1], Socket: s.socket(1)})
	if !errors.As(err, &api) || api.Status != 429 || !strings.Contains(err.Error(), "1 sandboxes already") {
		t.Fatalf("PUT over the limit: %v", err)
	}
	if err := s.host.Control.Delete("nope"); !errors.As(err, &api) || api.Status != 404 {
		t.Fatalf("DELETE of an unknown name: %v", err)
	}
	if err := s.deleteAll(0, 1, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.checkSandboxes(0); err != nil {
		t.Fatal(err)
	}
	// Explain says what state the daemon is in.
	if msg := s.host.Explain(errors.New("x")).Error(); !strings.Contains(msg, "descriptors open, RLIMIT_NOFILE soft") {
		t.Fatalf("Explain: %s", msg)
	}
}

// Every scenario runs end to end against the stand-in daemon with small
// sizes and yields its figures, both sides where there are two. The
// figures themselves are the stand-in's and are not checked beyond shape.
func TestHostScenarios(t *testing.T) {
	relay := buildRelay(t)
	t.Run("daemon=serve", func(t *testing.T) { hostScenarios(t, relay, relay) })
	t.Run("daemon=loop", func(t *testing.T) { hostScenarios(t, relay, fakeLoopMode) })
}

// hostScenarios runs the scenarios against the stand-in daemon in mode
// (fakeHostEnv).
func hostScenarios(t *testing.T, relay, mode string) {
	p := HostParams{
		Idle: 3, Settle: 50 * time.Millisecond, RTBlocks: 2, RTPerBlock: 20,
		Streams: 2, StreamBlocks: 2, StreamFrames: 8, StreamSize: 64 * kib,
		FloodClients: 2, FloodSize: 128, IsoBlocks: 2, IsoPerBlock: 20,
		Churn: 2, ChurnSettle: 100 * time.Millisecond, Workers: 2,
	}
	hb := newHostBench(t, relay, []string{fakeHostEnv + "=" + mode}, p)
	has := func(f Figures, units ...string) {
		t.Helper()
		for _, u := range units {
			if _, ok := f[u]; !ok {
				t.Errorf("no %s in %v", u, f)
			}
		}
	}
	idle, err := hb.Idle(p.Idle)
	if err != nil {
		t.Fatal(err)
	}
	has(idle, "KiB/sandbox", "threads", "cpus", "rss-MiB", "fds", "put-p50-ns", "put-p99-ns")
	if idle["put-p50-ns"] <= 0 || idle["put-p99-ns"] < idle["put-p50-ns"] {
		t.Errorf("PUT times %v", idle)
	}
	for name, run := range map[string]func() (map[string]Figures, error){"rt": hb.RoundTrip, "stream": hb.Stream, "isolation": hb.Isolation} {
		res, err := run()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %v", name, res)
		for _, impl := range []string{HostImpl, ServeImpl} {
			f := res[impl]
			switch name {
			case "rt":
				has(f, "p50-ns", "p99-ns", "p99.9-ns")
				if f["p50-ns"] <= 0 || f["p99-ns"] < f["p50-ns"] {
					t.Errorf("%s %s: %v", name, impl, f)
				}
			case "stream":
				has(f, "MB/s", "frames/s", "rss-MiB", "pss-MiB", "peak-rss-MiB", "spread-%")
				if f["MB/s"] <= 0 || f["rss-MiB"] <= 0 || f["pss-MiB"] <= 0 || f["pss-MiB"] > f["rss-MiB"] {
					t.Errorf("%s %s: %v", name, impl, f)
				}
			case "isolation":
				has(f, "idle-p99-ns", "flood-p99-ns", "p99-ratio", "flood-frames/s")
				if f["flood-frames/s"] <= 0 || f["p99-ratio"] != f["flood-p99-ns"]/f["idle-p99-ns"] {
					t.Errorf("%s %s: %v", name, impl, f)
				}
			}
		}
	}
	churn, err := hb.Churn()
	if err != nil {
		t.Fatal(err)
	}
	has(churn, "fds-start", "fds-end", "fd-change-%", "rss-start-MiB", "rss-peak-MiB", "rss-end-MiB", "rss-change-%", "cycle2-rss-change-%")
	// Nothing of the scenarios is left behind.
	if left, _ := filepath.Glob(filepath.Join(hb.Dir, "*")); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

// buildRelay builds cmd/relay into a temporary directory.
func buildRelay(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds cmd/relay")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build cmd/relay with")
	}
	bin := filepath.Join(t.TempDir(), "relay")
	if out, err := exec.Command(gobin, "build", "-o", bin, "github.com/agentrelay/agentrelay/cmd/relay").CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/relay: %v\n%s", err, out)
	}
	return bin
}
