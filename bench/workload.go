package bench

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentrelay/agentrelay/frame"
)

// Kind is the shape of a workload.
type Kind int

const (
	// RoundTrip: one client, one frame outstanding; latency per round trip.
	RoundTrip Kind = iota
	// Stream: every client pipelines frames through the echo with a writer
	// and a reader on the same connection and a bounded window in flight.
	Stream
)

// Workload is one entry of the table every target runs.
type Workload struct {
	Name    string // sub-benchmark name, without the impl
	Kind    Kind
	Size    int      // bytes per frame, length prefix included
	Clients int      // connections, each with its own writer and reader
	Window  int      // bytes a client may have in flight (sent, not yet echoed)
	Batch   int      // bytes a client writes per system call, at most
	ExecLog bool     // core.exec.stdout frames of one exec session, exec.log on
	Wide    bool     // the relay speaks the 0.5 handshake: 128 slots
	Guest   string   // InProcess or UnixGuest: where the relays' guest runs
	Targets []string // which targets run it
}

const (
	kib = 1 << 10
	mib = 1 << 20
)

var (
	allTargets   = []string{Reactor, Goroutine, Floor}
	relayTargets = []string{Reactor, Goroutine}
	// The byte forwarder serves one client at a time: fan-in needs the
	// frame-aware one.
	forwardTargets = []string{Reactor, Goroutine, Forwarder}
	frameTargets   = []string{Reactor, Goroutine, FrameForwarder}
)

// unixPrefix starts the names of the workloads on the socket-guest path.
const unixPrefix = "guest=unix/"

// Workloads is the suite: the same definitions for every target, first
// with the relays' in-process echo guest (beside the bare-socket floor),
// then the same again through an external echo guest process on a Unix
// socket (beside the C forwarders, the floor of that path).
var Workloads = withUnixGuest([]Workload{
	{Name: "rt/size=64", Kind: RoundTrip, Size: 64, Clients: 1, Targets: allTargets},
	{Name: "stream/size=64", Kind: Stream, Size: 64, Clients: 1, Window: 256 * kib, Batch: 64 * kib, Targets: allTargets},
	{Name: "stream/size=1K", Kind: Stream, Size: kib, Clients: 1, Window: 256 * kib, Batch: 64 * kib, Targets: allTargets},
	{Name: "stream/size=64K", Kind: Stream, Size: 64 * kib, Clients: 1, Window: 256 * kib, Batch: 64 * kib, Targets: allTargets},
	// Two frames in flight: one being echoed while the next is written.
	{Name: "stream/size=3M", Kind: Stream, Size: 3 * mib, Clients: 1, Window: 6 * mib, Batch: 3 * mib, Targets: allTargets},
	{Name: "fanin/clients=16/size=128", Kind: Stream, Size: 128, Clients: 16, Window: 64 * kib, Batch: 16 * kib, Targets: allTargets},
	// 128 clients need the 0.5 handshake, which only the reactor speaks.
	{Name: "fanin/clients=128/size=128", Kind: Stream, Size: 128, Clients: 128, Window: 16 * kib, Batch: 4 * kib, Wide: true, Targets: []string{Reactor}},
	{Name: "stream-execlog/size=64", Kind: Stream, Size: 64, Clients: 1, Window: 256 * kib, Batch: 64 * kib, ExecLog: true, Targets: relayTargets},
	{Name: "stream-execlog/size=64K", Kind: Stream, Size: 64 * kib, Clients: 1, Window: 256 * kib, Batch: 64 * kib, ExecLog: true, Targets: relayTargets},
})

// withUnixGuest returns ws followed by a copy of each on the socket-guest
// path, named with unixPrefix, where the floor is a forwarder in front of
// the same echo guest: the byte forwarder for one client, the frame-aware
// one for several.
func withUnixGuest(ws []Workload) []Workload {
	all := slices.Clone(ws)
	for _, w := range ws {
		w.Name, w.Guest = unixPrefix+w.Name, UnixGuest
		switch {
		case w.Wide:
			// Only the reactor speaks the 0.5 handshake.
		case !slices.Contains(w.Targets, Floor):
			w.Targets = relayTargets
		case w.Clients > 1:
			w.Targets = frameTargets
		default:
			w.Targets = forwardTargets
		}
		all = append(all, w)
	}
	return all
}

// Hooks bracket the measured part of a run: Start right before the first
// frame is sent, Stop right after the last is received.
type Hooks struct {
	Start, Stop func()
}

// Result is what one run measured from the client side.
type Result struct {
	Frames  int           // frames echoed in the measured part
	Elapsed time.Duration // between Start and Stop
	// Latency holds every round trip, sorted (RoundTrip only).
	Latency []time.Duration
	// PerClient holds how many frames each client had got back when the
	// first of them had got all of its share (Stream with several clients):
	// how evenly the target served them over the same stretch of time.
	PerClient []uint64
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of the sorted
// latencies: the smallest value at least p% of them do not exceed.
func (r Result) Percentile(p float64) time.Duration {
	return Percentile(r.Latency, p)
}

// Percentile returns the p-th percentile of sorted, nearest-rank.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100+0.999999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// Spread is (max-min)/max of PerClient, in percent: 0 is perfectly even.
func (r Result) Spread() float64 {
	if len(r.PerClient) == 0 {
		return 0
	}
	lo, hi := slices.Min(r.PerClient), slices.Max(r.PerClient)
	if hi == 0 {
		return 0
	}
	return 100 * float64(hi-lo) / float64(hi)
}

// warmFrames is how many frames each client sends before the measured part
// at most, so that the target's buffers have grown and its slot is settled.
const warmFrames = 256

// sessions numbers exec sessions across runs, so that no run reuses the id
// of a session an earlier run may have left open in the target.
var sessions atomic.Uint32

// Run runs w against the target listening on socket: n frames (round trips
// for RoundTrip) measured between h.Start and h.Stop, shared evenly among
// the clients.
func (w Workload) Run(socket string, n int, h Hooks) (Result, error) {
	conns := make([]*Conn, 0, w.Clients)
	defer func() {
		for _, c := range conns {
			c.Abort()
		}
	}()
	for range w.Clients {
		c, err := Dial(socket)
		if err != nil {
			return Result{}, err
		}
		conns = append(conns, c)
	}
	var res Result
	var err error
	if w.Kind == RoundTrip {
		res, err = w.roundTrips(conns[0], n, h)
	} else {
		res, err = w.stream(conns, n, h)
	}
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

func (w Workload) roundTrips(c *Conn, n int, h Hooks) (Result, error) {
	f, err := ExactFrame(frame.TypeExecStdin, 0, w.Size)
	if err != nil {
		return Result{}, err
	}
	echo := make([]byte, w.Size)
	lat := make([]time.Duration, n)
	ids := NewIDs(c.Offset, c.Step)
	got := Counter{Size: w.Size, Want: ids}
	trip := func() error {
		SetID(f, ids.Next())
		if err := c.Write(f); err != nil {
			return err
		}
		if err := c.ReadFull(echo); err != nil {
			return err
		}
		if k, err := got.Feed(echo); err != nil || k != 1 {
			return fmt.Errorf("round trip %d: %v", got.Frames, err)
		}
		return nil
	}
	for range min(n, warmFrames) {
		if err := trip(); err != nil {
			return Result{}, err
		}
	}
	h.Start()
	start := time.Now()
	for i := range lat {
		t0 := time.Now()
		if err := trip(); err != nil {
			return Result{}, err
		}
		lat[i] = time.Since(t0)
	}
	elapsed := time.Since(start)
	h.Stop()
	slices.Sort(lat)
	return Result{Frames: n, Elapsed: elapsed, Latency: lat}, nil
}

func (w Workload) stream(conns []*Conn, n int, h Hooks) (Result, error) {
	pipes := make([]*pipe, len(conns))
	for i, c := range conns {
		p, err := w.newPipe(c)
		if err != nil {
			return Result{}, err
		}
		pipes[i] = p
	}
	warm := min(max(2, n/len(pipes)), warmFrames, max(2, w.Window/w.Size))
	if _, err := runPipes(pipes, func(int) int { return warm }); err != nil {
		return Result{}, fmt.Errorf("warm-up: %w", err)
	}
	h.Start()
	start := time.Now()
	per, err := runPipes(pipes, func(i int) int {
		q := n / len(pipes)
		if i < n%len(pipes) {
			q++
		}
		return q
	})
	elapsed := time.Since(start)
	h.Stop()
	if err != nil {
		return Result{}, err
	}
	for _, p := range pipes {
		if err := p.end(); err != nil {
			return Result{}, err
		}
	}
	res := Result{Frames: n, Elapsed: elapsed}
	if len(pipes) > 1 {
		res.PerClient = per
	}
	return res, nil
}

// pipe is one client's pipelined stream: a writer that keeps at most window
// frames in flight, batch frames per write, and a reader that counts the
// echoes and hands back credit.
type pipe struct {
	c       *Conn
	size    int
	batch   []byte // batchN copies of the frame, ids patched per write
	batchN  int
	window  int // frames
	ids     IDs
	session uint32 // the exec session's id, or 0
	got     Counter
	rbuf    []byte

	recvd atomic.Uint64 // frames echoed since the pipe was made
	sent  uint64        // frames written, the writer's own
	kick  chan struct{} // the reader's nudge to a writer waiting for credit
}

func (w Workload) newPipe(c *Conn) (*pipe, error) {
	typ := frame.TypeExecStdin
	if w.ExecLog {
		typ = frame.TypeExecStdout
	}
	f, err := ExactFrame(typ, 0, w.Size)
	if err != nil {
		return nil, err
	}
	batchN := max(1, w.Batch/w.Size)
	p := &pipe{
		c:      c,
		size:   w.Size,
		batch:  make([]byte, 0, batchN*w.Size),
		batchN: batchN,
		window: max(batchN, w.Window/w.Size),
		ids:    NewIDs(c.Offset, c.Step),
		rbuf:   make([]byte, 256*kib),
		kick:   make(chan struct{}, 1),
	}
	for range batchN {
		p.batch = append(p.batch, f...)
	}
	p.got = Counter{Size: w.Size, Want: p.ids}
	if w.ExecLog {
		if err := p.startSession(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// startSession opens an exec session under a fresh id: its stdout frames,
// echoed back as if the guest had written them, are what the exec.log tap
// records.
func (p *pipe) startSession() error {
	p.ids.Skip(sessions.Add(1) % (frame.Step - 2))
	p.session = p.ids.Next()
	for i := 0; i < len(p.batch); i += p.size {
		SetID(p.batch[i:], p.session)
	}
	req, err := frame.AppendMessage(nil, p.session, frame.TypeExecRequest, frame.ExecRequest{Cmd: "bench"})
	if err != nil {
		return err
	}
	p.got = Counter{Want: IDs{next: p.session}, FixedID: true}
	if err := p.exchange(req); err != nil {
		return fmt.Errorf("exec request: %w", err)
	}
	p.got.Size = p.size
	return nil
}

// end closes the exec session, if any, with a terminal frame.
func (p *pipe) end() error {
	if p.session == 0 {
		return nil
	}
	exited, err := frame.AppendMessage(nil, p.session, frame.TypeExecExited, frame.ExecExited{Code: 0})
	if err != nil {
		return err
	}
	p.got.Size = 0
	if err := p.exchange(exited); err != nil {
		return fmt.Errorf("exec exited: %w", err)
	}
	return nil
}

// exchange sends f and waits for its echo, outside any stream.
func (p *pipe) exchange(f []byte) error {
	if err := p.c.Write(f); err != nil {
		return err
	}
	for want := p.got.Frames + 1; p.got.Frames < want; {
		n, err := p.c.Read(p.rbuf)
		if err != nil {
			return err
		}
		if _, err := p.got.Feed(p.rbuf[:n]); err != nil {
			return err
		}
	}
	return nil
}

// runPipes runs every pipe for quota(i) frames at once and returns how many
// frames each had got back when the first finished.
func runPipes(pipes []*pipe, quota func(i int) int) ([]uint64, error) {
	base := make([]uint64, len(pipes))
	for i, p := range pipes {
		base[i] = p.recvd.Load()
	}
	var (
		once sync.Once
		snap = make([]uint64, len(pipes))
		wg   sync.WaitGroup
		errs = make([]error, len(pipes))
	)
	firstDone := func() {
		for i, p := range pipes {
			snap[i] = p.recvd.Load() - base[i]
		}
	}
	for i, p := range pipes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.run(uint64(quota(i)))
			if errs[i] == nil {
				once.Do(firstDone)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("client %d: %w", i, err)
		}
	}
	return snap, nil
}

// run streams quota frames and returns once all have come back.
func (p *pipe) run(quota uint64) error {
	stop := make(chan struct{})
	werr := make(chan error, 1)
	go func() { werr <- p.write(p.sent+quota, stop) }()
	rerr := p.read(p.got.Frames + quota)
	if rerr != nil {
		close(stop)
		p.c.shutdown() // wake a writer blocked in write
	}
	if err := <-werr; err != nil && rerr == nil {
		return err
	}
	return rerr
}

func (p *pipe) write(until uint64, stop <-chan struct{}) error {
	for p.sent < until {
		k := min(uint64(p.batchN), until-p.sent)
		for p.sent+k > p.recvd.Load()+uint64(p.window) {
			select {
			case <-p.kick:
			case <-stop:
				return nil
			}
		}
		b := p.batch[:int(k)*p.size]
		if p.session == 0 {
			for i := 0; i < len(b); i += p.size {
				SetID(b[i:], p.ids.Next())
			}
		}
		if err := p.c.Write(b); err != nil {
			p.c.shutdown() // wake the reader
			return err
		}
		p.sent += k
	}
	return nil
}

func (p *pipe) read(until uint64) error {
	for p.got.Frames < until {
		n, err := p.c.Read(p.rbuf)
		if err != nil {
			return err
		}
		k, err := p.got.Feed(p.rbuf[:n])
		if err != nil {
			return err
		}
		if k > 0 {
			p.recvd.Add(uint64(k))
			select {
			case p.kick <- struct{}{}:
			default:
			}
		}
	}
	return nil
}
