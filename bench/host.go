package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The two sides of the host daemon's comparisons.
const (
	HostImpl  = "host"  // sandboxes of one `relay host`
	ServeImpl = "serve" // one `relay serve` process per sandbox
)

// HostParams sizes the host daemon's scenarios (DefaultHostParams is issue
// 12's; the tests use small ones).
type HostParams struct {
	Idle       int           // sandboxes of the idle and round-trip scenarios
	Settle     time.Duration // wait after the PUTs (and after start) before reading RSS
	RTBlocks   int           // alternating round-trip blocks per side
	RTPerBlock int           // round trips per block

	Streams      int // sandboxes streaming at once, and lone relays
	StreamBlocks int // alternating blocks per side
	StreamFrames int // frames per client per block
	StreamSize   int // bytes per frame

	FloodClients int // clients flooding one sandbox
	FloodSize    int // bytes per flood frame
	IsoBlocks    int // alternating blocks per side
	IsoPerBlock  int // round trips per block, idle and flooded each

	Churn       int           // sandboxes added and removed
	ChurnSettle time.Duration // how long RSS may take to come back after removal

	Workers int // control requests in flight at once
}

// DefaultHostParams are the sizes of issue 12's targets.
var DefaultHostParams = HostParams{
	Idle: 1000, Settle: time.Second, RTBlocks: 10, RTPerBlock: 1000,
	Streams: 64, StreamBlocks: 3, StreamFrames: 64, StreamSize: 64 * kib,
	FloodClients: 16, FloodSize: 128, IsoBlocks: 3, IsoPerBlock: 2000,
	Churn: 1000, ChurnSettle: 5 * time.Second, Workers: 4,
}

// Figures are one side's results of a scenario, by unit.
type Figures map[string]float64

// HostBench runs the host daemon's scenarios: each starts its own daemon
// (and lone relays where it compares against them) in a fresh directory,
// in front of its own many-guest echo process (ServeEchoGuests), and stops
// them all before it returns.
type HostBench struct {
	Relay string // bin/relay, run as `relay host` and `relay serve`
	Self  string // the benchmark binary, which serves ServeEchoGuests
	Dir   string // the scenarios' directories go under it
	// Daemon, if set, is run as `Daemon host ...` in place of Relay, with
	// HostEnv added to its environment (the tests' stand-in).
	Daemon  string
	HostEnv []string
	P       HostParams
	// Log, if set, receives what goes wrong after a scenario has measured
	// (b.Logf).
	Log func(format string, args ...any)
}

// scene is one scenario's processes.
type scene struct {
	dir    string
	guests *EchoGuests
	host   *Host
	serves []*Serve
}

func (hb *HostBench) scene(name string, guests int, cfg HostConfig) (*scene, error) {
	dir, err := os.MkdirTemp(hb.Dir, name)
	if err != nil {
		return nil, err
	}
	s := &scene{dir: dir}
	if s.guests, err = StartEchoGuests(hb.Self, dir, guests); err != nil {
		s.close()
		return nil, err
	}
	cfg.Relay, cfg.Dir, cfg.Env = hb.Relay, dir, hb.HostEnv
	if hb.Daemon != "" {
		cfg.Relay = hb.Daemon
	}
	if s.host, err = StartHost(cfg); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// close ends the scene's processes; a daemon that had to be killed is
// worth knowing of but does not undo what was measured, so it is logged.
func (hb *HostBench) close(s *scene) {
	if err := s.close(); err != nil && hb.Log != nil {
		hb.Log("closing the scenario: %v", err)
	}
}

func (s *scene) close() error {
	var errs []error
	if s.serves != nil {
		errs = append(errs, StopServes(s.serves))
	}
	if s.host != nil {
		errs = append(errs, s.host.Stop())
	}
	if s.guests != nil {
		errs = append(errs, s.guests.Stop())
	}
	os.RemoveAll(s.dir)
	return errors.Join(errs...)
}

// fail adds to err what the processes it may come from were doing.
func (s *scene) fail(err error) error {
	if s.guests != nil && !s.guests.Alive() {
		err = fmt.Errorf("%w; the echo guests exited: %s", err, s.guests.LogTail())
	}
	if s.host != nil {
		err = s.host.Explain(err)
	}
	return err
}

func sandboxName(i int) string { return fmt.Sprintf("sb%d", i) }

func (s *scene) socket(i int) string { return filepath.Join(s.dir, fmt.Sprintf("s%d.sock", i)) }

// putAll adds sandboxes first..first+n-1 on guests of the same index and
// returns how long each PUT took, sorted.
func (s *scene) putAll(first, n, workers int) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	err := parallel(n, workers, func(k int) error {
		i := first + k
		t0 := time.Now()
		err := s.host.Control.Put(sandboxName(i), SandboxSpec{Guest: "unix:" + s.guests.Paths[i], Socket: s.socket(i), Handshake: "auto"})
		lat[k] = time.Since(t0)
		if err != nil {
			return fmt.Errorf("sandbox %d of %d: %w", k+1, n, err)
		}
		return nil
	})
	if err != nil {
		return nil, s.fail(err)
	}
	slices.Sort(lat)
	return lat, nil
}

func (s *scene) deleteAll(first, n, workers int) error {
	err := parallel(n, workers, func(k int) error {
		if err := s.host.Control.Delete(sandboxName(first + k)); err != nil {
			return fmt.Errorf("sandbox %d of %d: %w", k+1, n, err)
		}
		return nil
	})
	if err != nil {
		return s.fail(err)
	}
	return nil
}

// checkSandboxes fails unless the daemon lists exactly want sandboxes, none
// of them gone.
func (s *scene) checkSandboxes(want int) error {
	sbs, err := s.host.Control.List()
	if err != nil {
		return s.fail(err)
	}
	states := map[string]int{}
	for _, sb := range sbs {
		states[sb.State]++
	}
	if len(sbs) != want || states["guest_gone"] > 0 || states["stopped"] > 0 {
		return s.fail(fmt.Errorf("the daemon lists %d sandboxes, want %d; by state: %v", len(sbs), want, states))
	}
	return nil
}

// parallel runs f(0..n-1) on workers goroutines and returns the first
// error; after one, the rest are not started.
func parallel(n, workers int, f func(i int) error) error {
	var (
		next   atomic.Int64
		failed atomic.Bool
		wg     sync.WaitGroup
		mu     sync.Mutex
		first  error
	)
	for range max(1, min(workers, n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					failed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// hostNofile is how many descriptors a daemon or echo process needs for n
// sandboxes: a listening socket and a connection each, and room for the
// rest.
func hostNofile(n int) uint64 { return uint64(2*n + 256) }

// Idle measures n idle sandboxes: the daemon's RSS Settle after n PUTs less
// its RSS when empty (also after Settle), per sandbox, with no forced GC;
// its threads and descriptors then; and how long the PUTs took.
func (hb *HostBench) Idle(n int) (Figures, error) {
	f, err := hb.idle(n)
	if err != nil {
		// Where the limit is the cause, say so up front: the daemon's own
		// message comes after it.
		if lim, lerr := RaiseFileLimit(); lerr == nil && lim.Cur < hostNofile(n) {
			err = fmt.Errorf("RLIMIT_NOFILE is %d (hard %d) and could not be raised (that takes root with CAP_SYS_RESOURCE), but %d sandboxes need about %d descriptors in the daemon: %w",
				lim.Cur, lim.Max, n, hostNofile(n), err)
		}
	}
	return f, err
}

func (hb *HostBench) idle(n int) (Figures, error) {
	s, err := hb.scene("idle", n, HostConfig{MaxSandboxes: n})
	if err != nil {
		return nil, err
	}
	defer hb.close(s)
	time.Sleep(hb.P.Settle)
	empty, err := ReadProcMem(s.host.Pid())
	if err != nil {
		return nil, err
	}
	lat, err := s.putAll(0, n, hb.P.Workers)
	if err != nil {
		return nil, err
	}
	s.host.Control.Close() // its connections are the harness's descriptors, not the sandboxes'
	time.Sleep(hb.P.Settle)
	full, err := ReadProcMem(s.host.Pid())
	if err != nil {
		return nil, err
	}
	fds, err := CountFDs(s.host.Pid())
	if err != nil {
		return nil, err
	}
	if err := s.checkSandboxes(n); err != nil {
		return nil, err
	}
	// After the measurement, since a client changes what a sandbox holds:
	// the first and the last sandbox serve.
	for _, i := range []int{0, n - 1} {
		c, err := Dial(s.socket(i))
		if err != nil {
			return nil, s.fail(fmt.Errorf("sandbox %d: %w", i, err))
		}
		c.Close()
	}
	return Figures{
		"sandboxes":     float64(n),
		"KiB/sandbox":   (float64(full.RSS) - float64(empty.RSS)) / float64(n),
		"rss-MiB":       float64(full.RSS) / 1024,
		"empty-rss-MiB": float64(empty.RSS) / 1024,
		"threads":       float64(full.Threads),
		"cpus":          float64(runtime.NumCPU()),
		"fds":           float64(fds),
		"put-p50-ns":    float64(Percentile(lat, 50)),
		"put-p99-ns":    float64(Percentile(lat, 99)),
	}, nil
}

// noHooks is for runs measured whole.
var noHooks = Hooks{Start: func() {}, Stop: func() {}}

// RoundTrip measures the 64-byte round trip of one sandbox among
// hb.P.Idle (the rest idle) against a lone `relay serve` on a guest of the
// same echo process, in alternating blocks so that drift on the machine
// falls on both alike.
func (hb *HostBench) RoundTrip() (map[string]Figures, error) {
	n := hb.P.Idle
	s, err := hb.scene("rt", n+1, HostConfig{MaxSandboxes: n})
	if err != nil {
		return nil, err
	}
	defer hb.close(s)
	if _, err := s.putAll(0, n, hb.P.Workers); err != nil {
		return nil, err
	}
	if s.serves, err = StartServes(hb.Relay, s.dir, "serve", s.guests.Paths[n:]); err != nil {
		return nil, err
	}
	sockets := map[string]string{HostImpl: s.socket(n / 2), ServeImpl: s.serves[0].Socket}
	w := Workload{Name: "rt", Kind: RoundTrip, Size: 64, Clients: 1}
	lat := map[string][]time.Duration{}
	for b := range hb.P.RTBlocks {
		for _, impl := range alternate(b) {
			res, err := w.Run(sockets[impl], hb.P.RTPerBlock, noHooks)
			if err != nil {
				return nil, s.fail(fmt.Errorf("%s round trips: %w", impl, err))
			}
			lat[impl] = append(lat[impl], res.Latency...)
		}
	}
	out := map[string]Figures{}
	for impl, l := range lat {
		slices.Sort(l)
		out[impl] = Figures{
			"p50-ns":   float64(Percentile(l, 50)),
			"p99-ns":   float64(Percentile(l, 99)),
			"p99.9-ns": float64(Percentile(l, 99.9)),
		}
	}
	return out, nil
}

// alternate is the order of the sides in block b: each goes first every
// other block.
func alternate(b int) []string {
	if b%2 == 0 {
		return []string{HostImpl, ServeImpl}
	}
	return []string{ServeImpl, HostImpl}
}

// Stream measures hb.P.Streams sandboxes of one daemon streaming
// StreamSize frames at once, one client each, against as many lone relays
// started side by side, in alternating blocks: aggregate throughput, and
// each side's total RSS and PSS at the end of a block (clients still
// connected) and peak RSS. PSS shares the pages of the one binary among the
// lone relays, where their RSS counts them once each.
func (hb *HostBench) Stream() (map[string]Figures, error) {
	n := hb.P.Streams
	s, err := hb.scene("stream", 2*n, HostConfig{MaxSandboxes: n})
	if err != nil {
		return nil, err
	}
	defer hb.close(s)
	if _, err := s.putAll(0, n, hb.P.Workers); err != nil {
		return nil, err
	}
	if s.serves, err = StartServes(hb.Relay, s.dir, "serve", s.guests.Paths[n:]); err != nil {
		return nil, err
	}
	sockets := map[string][]string{HostImpl: {}, ServeImpl: {}}
	for i := range n {
		sockets[HostImpl] = append(sockets[HostImpl], s.socket(i))
		sockets[ServeImpl] = append(sockets[ServeImpl], s.serves[i].Socket)
	}
	pids := map[string][]int{HostImpl: {s.host.Pid()}, ServeImpl: servePids(s.serves)}
	w := Workload{Name: "stream", Kind: Stream, Size: hb.P.StreamSize, Clients: n, Window: 256 * kib, Batch: 64 * kib}
	type acc struct {
		frames  int
		elapsed time.Duration
		rss     uint64
		pss     uint64
		spread  []float64
	}
	sum := map[string]*acc{HostImpl: {}, ServeImpl: {}}
	for b := range hb.P.StreamBlocks {
		for _, impl := range alternate(b) {
			var mem ProcMem
			var pss uint64
			var memErr error
			res, err := streamSockets(w, sockets[impl], n*hb.P.StreamFrames, Hooks{
				Start: func() {},
				Stop: func() {
					mem, memErr = sumMem(pids[impl])
					if memErr == nil {
						pss, memErr = sumPSS(pids[impl])
					}
				},
			})
			if err == nil {
				err = memErr
			}
			if err != nil {
				return nil, s.fail(fmt.Errorf("%s streams: %w", impl, err))
			}
			a := sum[impl]
			a.frames += res.Frames
			a.elapsed += res.Elapsed
			a.rss = max(a.rss, mem.RSS)
			a.pss = max(a.pss, pss)
			a.spread = append(a.spread, res.Spread())
		}
	}
	out := map[string]Figures{}
	for impl, a := range sum {
		mem, err := sumMem(pids[impl])
		if err != nil {
			return nil, err
		}
		secs := a.elapsed.Seconds()
		out[impl] = Figures{
			"MB/s":         float64(a.frames) * float64(hb.P.StreamSize) / secs / 1e6,
			"frames/s":     float64(a.frames) / secs,
			"rss-MiB":      float64(a.rss) / 1024,
			"pss-MiB":      float64(a.pss) / 1024,
			"peak-rss-MiB": float64(mem.HWM) / 1024,
			"spread-%":     median(a.spread),
		}
	}
	return out, nil
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// streamSockets runs the stream workload w with one client on each of
// sockets: n frames shared among them.
func streamSockets(w Workload, sockets []string, n int, h Hooks) (Result, error) {
	conns := make([]*Conn, 0, len(sockets))
	defer func() {
		for _, c := range conns {
			c.Abort()
		}
	}()
	for _, sock := range sockets {
		c, err := Dial(sock)
		if err != nil {
			return Result{}, err
		}
		conns = append(conns, c)
	}
	res, err := w.stream(conns, n, h)
	if err != nil {
		return res, err
	}
	for _, c := range conns {
		if err := c.Close(); err != nil {
			return res, err
		}
	}
	conns = conns[:0]
	return res, nil
}

// Isolation measures one sandbox's round trip while it is idle and while
// another sandbox on the same loop (the daemon runs with --loops 1) is
// flooded by FloodClients clients streaming FloodSize frames through its
// echo guest at full speed; the same against two lone relays shows what
// the machine's two CPUs alone make of the flood. Sides and conditions
// alternate by block.
func (hb *HostBench) Isolation() (map[string]Figures, error) {
	s, err := hb.scene("iso", 4, HostConfig{Loops: 1, MaxSandboxes: 2})
	if err != nil {
		return nil, err
	}
	defer hb.close(s)
	if _, err := s.putAll(0, 2, 1); err != nil {
		return nil, err
	}
	if s.serves, err = StartServes(hb.Relay, s.dir, "serve", s.guests.Paths[2:]); err != nil {
		return nil, err
	}
	flooded := map[string]string{HostImpl: s.socket(0), ServeImpl: s.serves[0].Socket}
	measured := map[string]string{HostImpl: s.socket(1), ServeImpl: s.serves[1].Socket}
	rt := Workload{Name: "rt", Kind: RoundTrip, Size: 64, Clients: 1}
	type acc struct {
		idle, busy []time.Duration
		frames     uint64
		elapsed    time.Duration
	}
	sum := map[string]*acc{HostImpl: {}, ServeImpl: {}}
	for b := range hb.P.IsoBlocks {
		for _, impl := range alternate(b) {
			a := sum[impl]
			res, err := rt.Run(measured[impl], hb.P.IsoPerBlock, noHooks)
			if err != nil {
				return nil, s.fail(fmt.Errorf("%s idle round trips: %w", impl, err))
			}
			a.idle = append(a.idle, res.Latency...)
			f, err := startFlood(flooded[impl], hb.P.FloodClients, hb.P.FloodSize)
			if err != nil {
				return nil, s.fail(fmt.Errorf("%s flood: %w", impl, err))
			}
			res, rtErr := rt.Run(measured[impl], hb.P.IsoPerBlock, noHooks)
			frames, elapsed, floodErr := f.stop()
			if err := errors.Join(rtErr, floodErr); err != nil {
				return nil, s.fail(fmt.Errorf("%s round trips under the flood: %w", impl, err))
			}
			a.busy = append(a.busy, res.Latency...)
			a.frames += frames
			a.elapsed += elapsed
		}
	}
	out := map[string]Figures{}
	for impl, a := range sum {
		slices.Sort(a.idle)
		slices.Sort(a.busy)
		idle99, busy99 := Percentile(a.idle, 99), Percentile(a.busy, 99)
		out[impl] = Figures{
			"idle-p50-ns":    float64(Percentile(a.idle, 50)),
			"idle-p99-ns":    float64(idle99),
			"flood-p50-ns":   float64(Percentile(a.busy, 50)),
			"flood-p99-ns":   float64(busy99),
			"p99-ratio":      Ratio(float64(busy99), float64(idle99)),
			"flood-frames/s": float64(a.frames) / a.elapsed.Seconds(),
		}
	}
	return out, nil
}

// Ratio is a/b, or 0 when b is 0 (nothing to compare with).
func Ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// flood keeps clients streaming through one sandbox until stopped.
type flood struct {
	halt   atomic.Bool
	done   chan error
	frames atomic.Uint64
	start  time.Time
	conns  []*Conn
}

// floodChunk is how many frames each flood client sends between checks
// for the stop.
const floodChunk = 2048

// floodRamp is how long the flood runs before the round trips it disturbs
// are measured.
const floodRamp = 200 * time.Millisecond

func startFlood(socket string, clients, size int) (*flood, error) {
	w := Workload{Name: "flood", Kind: Stream, Size: size, Clients: clients, Window: 64 * kib, Batch: 16 * kib}
	f := &flood{done: make(chan error, 1)}
	abort := func() {
		for _, c := range f.conns {
			c.Abort()
		}
	}
	pipes := make([]*pipe, 0, clients)
	for range clients {
		c, err := Dial(socket)
		if err != nil {
			abort()
			return nil, err
		}
		f.conns = append(f.conns, c)
		p, err := w.newPipe(c)
		if err != nil {
			abort()
			return nil, err
		}
		pipes = append(pipes, p)
	}
	f.start = time.Now()
	go func() {
		for !f.halt.Load() {
			if _, err := runPipes(pipes, func(int) int { return floodChunk }); err != nil {
				abort()
				f.done <- err
				return
			}
			f.frames.Add(uint64(floodChunk * len(pipes)))
		}
		var err error
		for _, c := range f.conns {
			err = errors.Join(err, c.Close())
		}
		f.done <- err
	}()
	time.Sleep(floodRamp)
	return f, nil
}

// stop ends the flood and returns how many frames it moved in how long.
func (f *flood) stop() (uint64, time.Duration, error) {
	f.halt.Store(true)
	err := <-f.done
	return f.frames.Load(), time.Since(f.start), err
}

// Churn adds and removes hb.P.Churn sandboxes twice and compares the
// daemon's descriptors and RSS with those of its start. RSS is read once it
// is back within 5 % of the start or after ChurnSettle, whichever comes
// first (the Go runtime returns freed memory to the system in the
// background, over seconds): settle-ms says how long it took.
func (hb *HostBench) Churn() (Figures, error) {
	n := hb.P.Churn
	s, err := hb.scene("churn", n, HostConfig{MaxSandboxes: n})
	if err != nil {
		return nil, err
	}
	defer hb.close(s)
	pid := s.host.Pid()
	// The control API's idle connections are the harness's descriptors:
	// closed before each count.
	s.host.Control.Close()
	time.Sleep(hb.P.Settle)
	fds0, err := CountFDs(pid)
	if err != nil {
		return nil, err
	}
	mem0, err := ReadProcMem(pid)
	if err != nil {
		return nil, err
	}
	var peak uint64
	var settle time.Duration
	cycle := func(ref uint64) (ProcMem, error) {
		if _, err := s.putAll(0, n, hb.P.Workers); err != nil {
			return ProcMem{}, err
		}
		if err := s.checkSandboxes(n); err != nil {
			return ProcMem{}, err
		}
		m, err := ReadProcMem(pid)
		if err != nil {
			return m, err
		}
		peak = max(peak, m.RSS)
		if err := s.deleteAll(0, n, hb.P.Workers); err != nil {
			return m, err
		}
		if err := s.checkSandboxes(0); err != nil {
			return m, err
		}
		s.host.Control.Close()
		t0 := time.Now()
		time.Sleep(hb.P.Settle)
		for {
			if m, err = ReadProcMem(pid); err != nil {
				return m, err
			}
			if float64(m.RSS) <= 1.05*float64(ref) || time.Since(t0) >= hb.P.ChurnSettle {
				settle = max(settle, time.Since(t0))
				return m, nil
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	mem1, err := cycle(mem0.RSS)
	if err != nil {
		return nil, err
	}
	fds1, err := CountFDs(pid)
	if err != nil {
		return nil, err
	}
	mem2, err := cycle(mem1.RSS)
	if err != nil {
		return nil, err
	}
	return Figures{
		"fds-start":           float64(fds0),
		"fds-end":             float64(fds1),
		"fd-change-%":         Change(float64(fds1), float64(fds0)),
		"rss-start-MiB":       float64(mem0.RSS) / 1024,
		"rss-peak-MiB":        float64(peak) / 1024,
		"rss-end-MiB":         float64(mem1.RSS) / 1024,
		"rss-change-%":        Change(float64(mem1.RSS), float64(mem0.RSS)),
		"anon-change-%":       Change(float64(mem1.RssAnon), float64(mem0.RssAnon)),
		"file-rss-change-MiB": (float64(mem1.RssFile) - float64(mem0.RssFile)) / 1024,
		"cycle2-rss-change-%": Change(float64(mem2.RSS), float64(mem1.RSS)),
		"settle-ms":           float64(settle.Milliseconds()),
	}, nil
}

// Change is the change from before to after, in percent of before.
func Change(after, before float64) float64 {
	if before == 0 {
		return 0
	}
	return 100 * (after - before) / before
}
