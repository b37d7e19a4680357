package execlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero Options.
const (
	DefaultMaxFileSize = 10 << 20
	DefaultKeep        = 3
	DefaultBufferSize  = 4 << 20
	minBufferSize      = 256
	flushSize          = 64 << 10 // write out once this much is formatted
	maxErrors          = 8        // errors kept for Close; the rest are counted
)

// Options configure a Writer. The zero value is the original's behaviour
// with the ceiling it states: 10 MiB files, three rotated ones.
type Options struct {
	// MaxFileSize is the size exec.log may reach; a line that would take it
	// further first rotates the file. A line longer than this goes alone
	// into a fresh file. 0 means DefaultMaxFileSize.
	MaxFileSize int64
	// Keep is how many rotated files (exec.log.1 … exec.log.Keep) are kept.
	// 0 means DefaultKeep; negative keeps none.
	Keep int
	// BufferSize bounds the bytes each producer (each Lane, and all Append
	// callers together) may have queued for the writer. 0 means
	// DefaultBufferSize; it is at least 256.
	BufferSize int
	// Now is the clock for "t"; nil means time.Now.
	Now func() time.Time
	// Runner, if set, formats and writes for this Writer on its goroutine,
	// shared with other Writers (a host's sandboxes); nil gives the Writer
	// a goroutine of its own.
	Runner *Runner

	// writeHook, if set, runs in the writer goroutine before every write to
	// the file; an error fails that write. Tests stall or break the disk
	// with it.
	writeHook func(p []byte) error
}

// Stats are running totals since Open.
type Stats struct {
	Lines      uint64 // lines written to exec.log
	Bytes      uint64 // bytes written to exec.log
	LostBytes  uint64 // chunk bytes dropped: buffer full, or appended after Close
	LostEvents uint64 // appends that lost some or all of their chunk
	Rotations  uint64
	Errors     uint64 // failed writes, renames, opens and closes
}

// Writer appends to <dir>/exec.log. Append and System are safe for
// concurrent use; a Lane is the lock-free path for one goroutine.
type Writer struct {
	o   Options
	now func() time.Time

	seq    atomic.Uint64 // record order across lanes
	closed atomic.Bool
	idle   atomic.Bool // the writer goroutine is (about to be) asleep on wake
	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}

	lanes   atomic.Pointer[[]*Lane] // copy on write, under lanesMu
	lanesMu sync.Mutex

	mu     sync.Mutex // serialises Append and System on their own lane
	shared *Lane

	lines, bytes, lostBytes, lostEvents, rotations, errors atomic.Uint64

	closeOnce sync.Once
	closeErr  error

	f *file // the writer goroutine's state

	// With a Runner: the link in its list of Writers with work, whether
	// this Writer is on it, and the lock that keeps the Runner and Close
	// from working on f at once (never taken by a producer).
	next     *Writer
	queued   atomic.Bool
	runMu    sync.Mutex
	finished bool
}

// file is what only the writer goroutine touches.
type file struct {
	paths    []string // exec.log, exec.log.1, … exec.log.Keep
	fd       *os.File
	size     int64
	out      []byte // formatted lines not yet written
	outLines uint64
	clock    clock
	msg      []byte // scratch for loss reports

	reportedBytes, reportedEvents uint64
	errs                          []error
	moreErrs                      int
}

// Open starts a Writer appending to dir/exec.log, creating dir if needed.
// An existing exec.log is appended to and its size counts toward rotation.
func Open(dir string, o Options) (*Writer, error) {
	if o.MaxFileSize <= 0 {
		o.MaxFileSize = DefaultMaxFileSize
	}
	if o.Keep == 0 {
		o.Keep = DefaultKeep
	}
	if o.BufferSize == 0 {
		o.BufferSize = DefaultBufferSize
	}
	o.BufferSize = max(o.BufferSize, minBufferSize)
	w := &Writer{
		o:    o,
		now:  o.Now,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
		f:    &file{},
	}
	if w.now == nil {
		w.now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("execlog: %w", err)
	}
	base := filepath.Join(dir, "exec.log")
	w.f.paths = []string{base}
	for i := 1; i <= o.Keep; i++ {
		w.f.paths = append(w.f.paths, base+"."+strconv.Itoa(i))
	}
	if err := w.f.open(); err != nil {
		return nil, err
	}
	w.lanes.Store(new([]*Lane))
	if o.Runner == nil {
		go w.run()
	}
	return w, nil
}

// Lane returns a new lock-free append path with its own buffer of
// Options.BufferSize bytes. Exactly one goroutine may use it.
func (w *Writer) Lane() *Lane {
	l := newLane(w, w.o.BufferSize)
	w.lanesMu.Lock()
	old := *w.lanes.Load()
	lanes := append(old[:len(old):len(old)], l)
	w.lanes.Store(&lanes)
	w.lanesMu.Unlock()
	return l
}

// MemoryBound returns the most memory w holds when lanes producers append
// (each Lane, plus one for Append and System together): a buffer of
// Options.BufferSize per lane, and the line being formatted, which a chunk
// of up to half a lane can make six times its size (every byte a control
// character), next to the previous formatting buffer (at most 1 MiB).
func (w *Writer) MemoryBound(lanes int) int64 {
	return int64(lanes)*int64(w.o.BufferSize) + 16*flushSize + flushSize + int64(MaxLineSize(w.o.BufferSize/2))
}

// Append queues one chunk for exec.log; it never waits for the disk. It may
// be called from any goroutine, but callers contend on a mutex that Lane
// users never touch.
func (w *Writer) Append(s Source, session uint64, data []byte) {
	w.append(s, session, data, false)
}

// System queues a relay note such as "--- sandbox started ---", ending it
// with a newline if it has none.
func (w *Writer) System(msg string) {
	w.append(System, 0, stringBytes(msg), !strings.HasSuffix(msg, "\n"))
}

func (w *Writer) append(s Source, session uint64, data []byte, newline bool) {
	nanos := w.now().UnixNano() // outside the lock: the clock is slow on some hosts
	w.mu.Lock()
	if w.shared == nil {
		if w.closed.Load() {
			w.mu.Unlock()
			w.lose(len(data) + b2i(newline))
			return
		}
		w.shared = w.Lane()
	}
	w.shared.push(nanos, s, session, data, newline)
	w.mu.Unlock()
}

func (w *Writer) lose(n int) {
	w.lostEvents.Add(1)
	w.lostBytes.Add(uint64(n))
}

// notify wakes the writer goroutine if it announced it was going to sleep;
// a busy writer costs its producers one atomic load.
func (w *Writer) notify() {
	if r := w.o.Runner; r != nil {
		if !w.queued.Load() && w.queued.CompareAndSwap(false, true) {
			r.push(w)
		}
		return
	}
	if w.idle.Load() && w.idle.CompareAndSwap(true, false) {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// Stats returns the running totals.
func (w *Writer) Stats() Stats {
	return Stats{
		Lines:      w.lines.Load(),
		Bytes:      w.bytes.Load(),
		LostBytes:  w.lostBytes.Load(),
		LostEvents: w.lostEvents.Load(),
		Rotations:  w.rotations.Load(),
		Errors:     w.errors.Load(),
	}
}

// Close writes everything appended before it, closes the file and returns
// the errors the writer met since Open. Later appends are counted as lost.
func (w *Writer) Close() error {
	w.closeOnce.Do(func() {
		w.closed.Store(true)
		// An Append that started before closed was set is let finish, so
		// that what it published is drained below; later ones see closed.
		for _, l := range *w.lanes.Load() {
			for l.active.Load() {
				runtime.Gosched()
			}
		}
		if w.o.Runner != nil {
			w.runMu.Lock()
			w.service()
			if err := w.f.close(); err != nil {
				w.fail(err)
			}
			w.finished = true
			w.runMu.Unlock()
		} else {
			close(w.stop)
			<-w.done
		}
		errs := w.f.errs
		if w.f.moreErrs > 0 {
			errs = append(errs, fmt.Errorf("execlog: %d more errors", w.f.moreErrs))
		}
		w.closeErr = errors.Join(errs...)
	})
	return w.closeErr
}

// service writes out everything queued now.
func (w *Writer) service() {
	w.drain()
	w.reportLost()
	w.flush()
}

// run is the writer goroutine of a Writer without a Runner.
func (w *Writer) run() {
	defer close(w.done)
	stopping := false
	for {
		w.service()
		if stopping {
			if err := w.f.close(); err != nil {
				w.fail(err)
			}
			return
		}
		w.idle.Store(true)
		if !w.pending() {
			select {
			case <-w.wake:
			case <-w.stop:
				stopping = true
			}
		}
		w.idle.Store(false)
	}
}

func (w *Writer) pending() bool {
	for _, l := range *w.lanes.Load() {
		if l.pending() {
			return true
		}
	}
	return false
}

// drain formats every queued record, oldest sequence number first, so that
// appends ordered by happens-before (a System note, then the reactor's
// output) stay in that order across lanes.
func (w *Writer) drain() {
	for {
		l, r, ok := w.oldest()
		if !ok {
			return
		}
		// A record published before r's Append began may sit in a lane
		// scanned before it became visible. Scanning again after seeing r
		// finds it; repeat until the oldest is stable.
		for {
			l2, r2, _ := w.oldest()
			if r2.seq == r.seq {
				break
			}
			l, r = l2, r2
		}
		f := w.f
		start := len(f.out)
		// Room for the longest line the chunk can make, taken at once:
		// growing piecemeal while escaping would leave a trail of ever
		// larger discarded buffers behind a large chunk.
		f.out = slices.Grow(f.out, MaxLineSize(len(r.data)))
		f.out = f.clock.appendLine(f.out, r.nanos, r.source, r.session, r.data)
		l.consume(r)
		w.placed(start)
	}
}

func (w *Writer) oldest() (l *Lane, r record, ok bool) {
	for _, c := range *w.lanes.Load() {
		if cr, cok := c.peek(); cok && (!ok || cr.seq < r.seq) {
			l, r, ok = c, cr, true
		}
	}
	return l, r, ok
}

// placed accounts for the line just formatted at f.out[start:]: it starts a
// new file if it would take this one past MaxFileSize.
func (w *Writer) placed(start int) {
	f := w.f
	n := int64(len(f.out) - start)
	if used := f.size + int64(start); used > 0 && used+n > w.o.MaxFileSize {
		w.write(f.out[:start], f.outLines)
		w.rotate()
		f.out = f.out[:copy(f.out, f.out[start:])]
		f.outLines = 0
	}
	f.outLines++
	if len(f.out) >= flushSize {
		w.flush()
	}
}

// reportLost notes in the log what was dropped since the last note. It runs
// when the rings are drained, so the note follows the surviving lines.
func (w *Writer) reportLost() {
	f := w.f
	lb := w.lostBytes.Load()
	le := w.lostEvents.Load()
	if lb == f.reportedBytes && le == f.reportedEvents {
		return
	}
	m := append(f.msg[:0], "--- exec.log: lost "...)
	m = strconv.AppendUint(m, lb-f.reportedBytes, 10)
	m = append(m, " bytes in "...)
	m = strconv.AppendUint(m, le-f.reportedEvents, 10)
	m = append(m, " chunks (buffer full) ---\n"...)
	f.msg = m
	f.reportedBytes, f.reportedEvents = lb, le
	start := len(f.out)
	f.out = f.clock.appendLine(f.out, w.now().UnixNano(), System, 0, m)
	w.placed(start)
}

func (w *Writer) flush() {
	f := w.f
	w.write(f.out, f.outLines)
	f.out, f.outLines = f.out[:0], 0
	if cap(f.out) > 16*flushSize { // after a huge line
		f.out = make([]byte, 0, 2*flushSize)
	}
}

// write puts p, holding lines lines, into exec.log. Lines that fail are
// counted as errors and not retried: the log must not grow a backlog.
func (w *Writer) write(p []byte, lines uint64) {
	f := w.f
	if len(p) == 0 {
		return
	}
	if f.fd == nil { // a rotation failed to reopen; try again
		if err := f.open(); err != nil {
			w.fail(err)
			return
		}
	}
	if w.o.writeHook != nil {
		if err := w.o.writeHook(p); err != nil {
			w.fail(fmt.Errorf("execlog: write: %w", err))
			return
		}
	}
	n, err := f.fd.Write(p)
	f.size += int64(n)
	w.bytes.Add(uint64(n))
	if err != nil {
		w.fail(fmt.Errorf("execlog: write: %w", err))
		return
	}
	w.lines.Add(lines)
}

func (w *Writer) rotate() {
	if err := w.f.rotate(); err != nil {
		w.fail(err)
		return
	}
	w.rotations.Add(1)
}

func (w *Writer) fail(err error) {
	w.errors.Add(1)
	f := w.f
	if len(f.errs) < maxErrors {
		f.errs = append(f.errs, err)
	} else {
		f.moreErrs++
	}
}
