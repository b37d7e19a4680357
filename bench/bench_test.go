package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestMain(m *testing.M) {
	// Re-executed by Start, StartEchoGuests or the host tests: become the
	// floor, an echo guest, the many-guest process or a stand-in daemon.
	if relay := os.Getenv(fakeHostEnv); relay != "" {
		if err := runFakeHost(relay, os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	for env, serve := range map[string]func(string) error{FloorEnv: ServeFloor, EchoGuestEnv: ServeEchoGuest, EchoGuestsEnv: ServeEchoGuestsFromEnv} {
		if path := os.Getenv(env); path != "" {
			if err := serve(path); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	code := m.Run()
	targets.stopAll()
	os.Exit(code)
}

// targets are started on first use and shared by every benchmark of the
// run, so that a round of the suite starts each process once.
var targets = &registry{m: map[string]*Target{}}

type registry struct {
	mu     sync.Mutex
	dir    string
	m      map[string]*Target
	fwd    string // the compiled forwarder, once built
	fwdErr error  // why it could not be built
}

// relayBinary finds the binary of impl: bin/relay for the reactor,
// bin/relay-baseline for the goroutine baseline; $RELAY_BIN or
// $RELAY_BASELINE_BIN, else ../bin/ from this package's directory (where
// `make build` puts them).
func relayBinary(impl string) (string, error) {
	env, name := "RELAY_BIN", "relay"
	if impl == Goroutine {
		env, name = "RELAY_BASELINE_BIN", "relay-baseline"
	}
	if p := os.Getenv(env); p != "" {
		return p, nil
	}
	p, err := filepath.Abs(filepath.Join("..", "bin", name))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no %s binary (run `make build` or set %s): %w", name, env, err)
	}
	return p, nil
}

// get returns the running target impl with its guest where guest says
// (with exec.log if execLog), starting it if need be; it skips tb if the
// target cannot run here. bin is the directory holding relay and
// relay-baseline, or empty for relayBinary's choice.
func (r *registry) get(tb testing.TB, impl string, w Workload, bin string) *Target {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	guest, execLog := w.Guest, w.ExecLog && impl != Floor && impl != Forwarder && impl != FrameForwarder
	cfg := Config{Impl: impl, Guest: guest, ExecLog: execLog, Wide: w.Wide}
	if ext, ok := attached(tb, impl, guest, execLog); ok {
		return ext
	}
	if t := r.m[cfg.Name()]; t != nil {
		if t.Alive() {
			return t
		}
		tb.Logf("%s had exited; restarting it: %s", t.Name(), t.LogTail())
		t.Stop()
		delete(r.m, cfg.Name())
	}
	if r.dir == "" {
		// Short: a Unix socket path has room for 107 bytes.
		d, err := os.MkdirTemp("", "relaybench")
		if err != nil {
			tb.Fatal(err)
		}
		r.dir = d
	}
	cfg.Dir = r.dir
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Self = exe
	switch impl {
	case Floor:
	case Forwarder, FrameForwarder:
		if r.fwd == "" && r.fwdErr == nil {
			r.fwd, r.fwdErr = BuildForwarder(r.dir)
		}
		if errors.Is(r.fwdErr, ErrNoCompiler) {
			tb.Skip(r.fwdErr)
		}
		if r.fwdErr != nil {
			tb.Fatal(r.fwdErr)
		}
		cfg.Forwarder = r.fwd
	default:
		if bin != "" {
			cfg.Relay = filepath.Join(bin, "relay")
			if impl == Goroutine {
				cfg.Relay = filepath.Join(bin, "relay-baseline")
			}
		} else {
			var err error
			if cfg.Relay, err = relayBinary(impl); err != nil {
				tb.Skip(err)
			}
		}
	}
	t, err := Start(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if t.KernelErr != nil {
		tb.Logf("%s: no syscall or context-switch counts: %v", t.Name(), t.KernelErr)
	}
	r.m[cfg.Name()] = t
	return t
}

// AttachEnv names the variable with which scripts/profile.sh hands the
// benchmarks a relay it started itself: "IMPL=SOCKET,DEBUGADDR,PID" for a
// relay on its in-process echo guest, "IMPL@unix=SOCKET,DEBUGADDR,PID" for
// one on an external echo guest (which the script started too).
const AttachEnv = "AGENTRELAY_BENCH_ATTACH"

var external struct {
	once  sync.Once
	impl  string
	guest string
	t     *Target
	err   error
}

// attached returns the externally started target for impl on guest, if
// AttachEnv names one.
func attached(tb testing.TB, impl, guest string, execLog bool) (*Target, bool) {
	tb.Helper()
	spec := os.Getenv(AttachEnv)
	if spec == "" {
		return nil, false
	}
	external.once.Do(func() {
		eq := strings.IndexByte(spec, '=')
		parts := strings.Split(spec[eq+1:], ",")
		var pid int
		if eq <= 0 || len(parts) != 3 {
			external.err = fmt.Errorf("%s=%q: want IMPL[@unix]=SOCKET,DEBUGADDR,PID", AttachEnv, spec)
			return
		}
		if pid, external.err = strconv.Atoi(parts[2]); external.err != nil {
			return
		}
		external.impl, external.guest, _ = strings.Cut(spec[:eq], "@")
		if external.guest != InProcess && external.guest != UnixGuest {
			external.err = fmt.Errorf("%s=%q: unknown guest %q", AttachEnv, spec, external.guest)
			return
		}
		external.t, external.err = AttachTo(external.impl, parts[0], parts[1], pid)
	})
	if external.err != nil {
		tb.Fatal(external.err)
	}
	if impl != external.impl || guest != external.guest || execLog {
		return nil, false
	}
	return external.t, true
}

// discard stops a target that failed a run, so that the next run starts
// afresh instead of inheriting frames in flight.
func (r *registry) discard(t *Target) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[t.Name()] == t {
		delete(r.m, t.Name())
	}
	t.Stop()
}

func (r *registry) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, t := range r.m {
		if err := t.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		delete(r.m, name)
	}
	if r.dir != "" {
		os.RemoveAll(r.dir)
		r.dir = ""
		r.fwd, r.fwdErr = "", nil
	}
}

// BenchmarkRelay runs every workload against every target:
// Relay/<workload>/impl=<target>, the socket-guest path's workloads under
// Relay/guest=unix/. One op is one frame echoed (one round trip for rt).
// The target's own costs are reported per op: allocs/frame (relays only:
// heap allocations from its memstats), cpu-ns/frame (user + system time of
// the whole process, the in-process echo guest included), with BPF
// syscalls/frame and ctxsw/frame, and on the socket-guest path
// guest-cpu-ns/frame, the external echo guest's CPU time.
func BenchmarkRelay(b *testing.B) {
	runTree(b, workloadTree(Workloads))
}

// node is one level of the benchmark names: the workloads whose names
// share a prefix run under one sub-benchmark, so that each name element is
// one level and -bench patterns such as Relay/stream/^size=64$/impl=reactor
// select as expected.
type node struct {
	name     string
	children []*node
	w        *Workload // at a leaf
}

func workloadTree(ws []Workload) *node {
	root := &node{}
	for i := range ws {
		n := root
		for _, el := range strings.Split(ws[i].Name, "/") {
			var next *node
			for _, c := range n.children {
				if c.name == el {
					next = c
				}
			}
			if next == nil {
				next = &node{name: el}
				n.children = append(n.children, next)
			}
			n = next
		}
		n.w = &ws[i]
	}
	return root
}

func runTree(b *testing.B, n *node) {
	if w := n.w; w != nil {
		for _, impl := range w.Targets {
			b.Run("impl="+impl, func(b *testing.B) { benchmark(b, *w, impl) })
		}
	}
	for _, c := range n.children {
		b.Run(c.name, func(b *testing.B) { runTree(b, c) })
	}
}

func benchmark(b *testing.B, w Workload, impl string) {
	t := targets.get(b, impl, w, "")
	var before, after Usage
	var usageErr error
	hooks := Hooks{
		Start: func() {
			before, usageErr = t.Begin()
			b.ResetTimer()
		},
		Stop: func() {
			b.StopTimer()
			if usageErr == nil {
				after, usageErr = t.End()
			}
		},
	}
	if w.Kind == Stream {
		b.SetBytes(int64(w.Size))
	}
	res, err := w.Run(t.Socket, b.N, hooks)
	if err != nil {
		stats := "(none)"
		if t.DebugAddr != "" {
			var serr error
			if stats, serr = Counters(t.DebugAddr); serr != nil {
				stats = serr.Error()
			}
		}
		tail := t.LogTail()
		autopsy := t.Autopsy()
		targets.discard(t)
		b.Fatalf("%s against %s: %v\n%s counters: %s\n%s log:\n%s\n%s", w.Name, impl, err, t.Name(), stats, t.Name(), tail, autopsy)
	}
	if usageErr != nil {
		b.Fatal(usageErr)
	}
	report(b, w, res, after.Sub(before))
}

func report(b *testing.B, w Workload, res Result, u Usage) {
	frames := float64(res.Frames)
	switch {
	case w.Kind == RoundTrip:
		b.ReportMetric(float64(res.Percentile(50)), "p50-ns")
		b.ReportMetric(float64(res.Percentile(99)), "p99-ns")
		b.ReportMetric(float64(res.Percentile(99.9)), "p99.9-ns")
	default:
		b.ReportMetric(frames/res.Elapsed.Seconds(), "frames/s")
		if w.Clients > 1 {
			b.ReportMetric(res.Spread(), "spread-%")
		}
	}
	b.ReportMetric(float64(u.CPU)/frames, "cpu-ns/frame")
	if u.HasMallocs {
		b.ReportMetric(float64(u.Mallocs)/frames, "allocs/frame")
	}
	if u.HasKernel {
		b.ReportMetric(float64(u.Syscalls)/frames, "syscalls/frame")
		b.ReportMetric(float64(u.Switches)/frames, "ctxsw/frame")
	}
	if u.HasGuest {
		b.ReportMetric(float64(u.GuestCPU)/frames, "guest-cpu-ns/frame")
	}
}
