package execlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func fixed() time.Time { return t0 }

func open(t *testing.T, dir string, o Options) *Writer {
	t.Helper()
	w, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func closeOK(t *testing.T, w *Writer) {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func lines(s string) []string {
	return strings.SplitAfter(strings.TrimSuffix(s, "\n"), "\n")
}

func TestWriterLines(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, Options{Now: fixed})
	w.System("--- sandbox started ---")
	w.Append(Stdout, 1, []byte("hello\n"))
	l := w.Lane()
	l.Append(Stderr, 1, []byte("\xff\xfe\x00hi\xc3(\x80\x1b[0m"))
	l.AppendAt(t0.Add(-time.Hour), Output, 2, []byte("<&>\"\\"))
	w.System("done\n")
	closeOK(t, w)
	const pre = `{"t":"2026-04-30T20:32:59.688Z",`
	want := pre + `"s":"system","d":"--- sandbox started ---\n"}` + "\n" +
		pre + `"s":"stdout","d":"hello\n","id":1}` + "\n" +
		pre + `"s":"stderr","d":"��\u0000hi�(�\u001b[0m","id":1}` + "\n" +
		`{"t":"2026-04-30T19:32:59.688Z","s":"output","d":"<&>\"\\","id":2}` + "\n" +
		pre + `"s":"system","d":"done\n"}` + "\n"
	if got := read(t, filepath.Join(dir, "exec.log")); got != want {
		t.Fatalf("exec.log:\n%s\nwant:\n%s", got, want)
	}
	if s := w.Stats(); s != (Stats{Lines: 5, Bytes: uint64(len(want))}) {
		t.Fatalf("Stats = %+v", s)
	}
}

func TestRealClock(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, Options{})
	before := time.Now().UTC().Truncate(time.Millisecond)
	w.Append(Stdout, 1, []byte("x"))
	closeOK(t, w)
	after := time.Now()
	var e entry
	if err := json.Unmarshal([]byte(read(t, filepath.Join(dir, "exec.log"))), &e); err != nil {
		t.Fatal(err)
	}
	at, err := time.Parse("2006-01-02T15:04:05.000Z", e.T)
	if err != nil || at.Before(before) || at.After(after) {
		t.Fatalf("t = %s (%v), want between %v and %v", e.T, err, before, after)
	}
}

// numbered writes lines "<tag> <i>" of about size bytes each.
func numbered(tag string, i, size int) []byte {
	b := fmt.Appendf(nil, "%s %d ", tag, i)
	for len(b) < size-1 {
		b = append(b, '.')
	}
	return append(b, '\n')
}

func number(t testing.TB, d string) (string, int) {
	t.Helper()
	f := strings.Fields(d)
	if len(f) < 2 {
		t.Fatalf("torn chunk %q", d)
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatalf("torn chunk %q", d)
	}
	return f[0], n
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	const max = 1000
	w := open(t, dir, Options{Now: fixed, MaxFileSize: max})
	l := w.Lane()
	const n = 200
	for i := range n {
		l.Append(Stdout, 1, numbered("c", i, 20))
		if i%10 == 0 {
			time.Sleep(time.Millisecond) // let the writer rotate at several points
		}
	}
	closeOK(t, w)
	names := []string{"exec.log.3", "exec.log.2", "exec.log.1", "exec.log"}
	var all []string
	total := 0
	for _, name := range names {
		s := read(t, filepath.Join(dir, name))
		if len(s) > max || len(s) < max-100 && name != "exec.log" {
			t.Errorf("%s is %d bytes, want full up to %d", name, len(s), max)
		}
		total += len(s)
		all = append(all, lines(s)...)
	}
	if _, err := os.Stat(filepath.Join(dir, "exec.log.4")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("exec.log.4 exists: %v", err)
	}
	if total > 4*max {
		t.Errorf("%d bytes in all, ceiling %d", total, 4*max)
	}
	// The files hold the newest lines, oldest first, with no gap.
	for k, line := range all {
		var e entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if _, i := number(t, e.D); i != n-len(all)+k {
			t.Fatalf("line %d of the surviving %d is chunk %d, want %d", k, len(all), i, n-len(all)+k)
		}
	}
	s := w.Stats()
	if s.Lines != n || s.Errors != 0 || s.Rotations < 3 || s.LostBytes != 0 {
		t.Fatalf("Stats = %+v", s)
	}
	// Each line is 81 bytes: 12 to a 1000-byte file, so 16 rotations.
	if s.Rotations != (n-1)/(max/81) {
		t.Errorf("Rotations = %d, want %d", s.Rotations, (n-1)/(max/81))
	}
}

func TestRotationOversizedLine(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, Options{Now: fixed, MaxFileSize: 300})
	w.Append(Stdout, 1, []byte("small\n"))
	big := bytes.Repeat([]byte("B"), 500)
	w.Append(Stdout, 1, big)
	w.Append(Stdout, 1, []byte("after\n"))
	closeOK(t, w)
	if got := read(t, filepath.Join(dir, "exec.log.2")); !strings.Contains(got, `"small\n"`) || len(lines(got)) != 1 {
		t.Errorf("exec.log.2 = %q, want the small line alone", got)
	}
	if got := read(t, filepath.Join(dir, "exec.log.1")); !strings.Contains(got, string(big)) || len(lines(got)) != 1 {
		t.Errorf("exec.log.1 = %q, want the big line alone", got)
	}
	if got := read(t, filepath.Join(dir, "exec.log")); !strings.Contains(got, `"after\n"`) || len(lines(got)) != 1 {
		t.Errorf("exec.log = %q, want the last line alone", got)
	}
}

func TestKeepNone(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, Options{Now: fixed, MaxFileSize: 100, Keep: -1})
	w.Append(Stdout, 1, numbered("a", 0, 40))
	w.Append(Stdout, 1, numbered("b", 1, 40))
	closeOK(t, w)
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("%d files, want exec.log alone", len(ents))
	}
	if got := read(t, filepath.Join(dir, "exec.log")); !strings.Contains(got, "b 1") || strings.Contains(got, "a 0") {
		t.Fatalf("exec.log = %q", got)
	}
}

func TestReopenAppends(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, Options{Now: fixed})
	w.Append(Stdout, 1, []byte("first\n"))
	closeOK(t, w)
	w = open(t, dir, Options{Now: fixed})
	w.Append(Stdout, 2, []byte("second\n"))
	closeOK(t, w)
	got := lines(read(t, filepath.Join(dir, "exec.log")))
	if len(got) != 2 || !strings.Contains(got[0], `"first\n","id":1`) || !strings.Contains(got[1], `"second\n","id":2`) {
		t.Fatalf("exec.log = %q", got)
	}
}

func TestReopenCountsExistingSize(t *testing.T) {
	dir := t.TempDir()
	old := strings.Repeat("x", 950) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "exec.log"), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	w := open(t, dir, Options{Now: fixed, MaxFileSize: 1000})
	w.Append(Stdout, 1, []byte("new\n"))
	closeOK(t, w)
	if got := read(t, filepath.Join(dir, "exec.log.1")); got != old {
		t.Fatalf("exec.log.1 = %q, want the old content", got)
	}
	if got := read(t, filepath.Join(dir, "exec.log")); !strings.Contains(got, `"new\n"`) {
		t.Fatalf("exec.log = %q", got)
	}
}

var lineShape = regexp.MustCompile(`^\{"t":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","s":"(stdout|stderr|output|system)","d":"(?:[^"\\]|\\.)*"(,"id":\d+)?\}\n$`)

func TestConcurrentOrdering(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, Options{})
	const producers, n = 4, 3000
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			tag := "p" + strconv.Itoa(p)
			for i := range n {
				w.Append(Source(p%3), uint64(p+1), numbered(tag, i, 10+i%50))
			}
		})
	}
	wg.Go(func() {
		l := w.Lane()
		for i := range n {
			l.Append(Stdout, 99, numbered("lane", i, 10+i%70))
		}
	})
	wg.Wait()
	closeOK(t, w)
	next := map[string]int{}
	f, err := os.Open(filepath.Join(dir, "exec.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	count := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		count++
		if !lineShape.MatchString(line) {
			t.Fatalf("line %q has the wrong shape", line)
		}
		if k := keys(t, []byte(line)); strings.Join(k, ",") != "t,s,d,id" {
			t.Fatalf("line %q: keys %v", line, k)
		}
		var e entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		tag, i := number(t, e.D)
		if i != next[tag] {
			t.Fatalf("%s: chunk %d after %d", tag, i, next[tag]-1)
		}
		next[tag]++
	}
	if count != (producers+1)*n {
		t.Fatalf("%d lines, want %d (stats %+v)", count, (producers+1)*n, w.Stats())
	}
}

// An append that happens before another, on a different lane, is written
// first: the relay's System note precedes the output the reactor's lane
// records after it.
func TestOrderAcrossLanes(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, Options{Now: fixed})
	const n = 2000
	turn := make(chan int)
	done := make(chan struct{})
	go func() {
		l := w.Lane()
		for i := range turn {
			l.Append(Stdout, 1, numbered("b", i, 8))
			done <- struct{}{}
		}
	}()
	for i := range n {
		w.Append(Stdout, 1, numbered("a", i, 8))
		turn <- i
		<-done
	}
	close(turn)
	closeOK(t, w)
	got := lines(read(t, filepath.Join(dir, "exec.log")))
	if len(got) != 2*n {
		t.Fatalf("%d lines, want %d", len(got), 2*n)
	}
	for k, line := range got {
		var e entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		tag, i := number(t, e.D)
		if want := [2]string{"a", "b"}[k%2]; tag != want || i != k/2 {
			t.Fatalf("line %d is %s %d, want %s %d", k, tag, i, want, k/2)
		}
	}
}

// valve is a write hook that, while shut, blocks every write and reports
// it on entered: a disk that has stopped.
type valve struct {
	mu      sync.Mutex
	gate    chan struct{} // nil while open
	entered chan struct{}
}

func newValve() *valve { return &valve{entered: make(chan struct{}, 1000)} }

func (v *valve) hook([]byte) error {
	v.mu.Lock()
	g := v.gate
	v.mu.Unlock()
	if g != nil {
		v.entered <- struct{}{}
		<-g
	}
	return nil
}

func (v *valve) shut() {
	v.mu.Lock()
	if v.gate == nil {
		v.gate = make(chan struct{})
	}
	v.mu.Unlock()
}

func (v *valve) open() {
	v.mu.Lock()
	if v.gate != nil {
		close(v.gate)
		v.gate = nil
	}
	v.mu.Unlock()
}

func TestOverflowReported(t *testing.T) {
	dir := t.TempDir()
	v := newValve()
	v.shut()
	o := Options{Now: fixed, BufferSize: 1024}
	o.writeHook = v.hook
	w := open(t, dir, o)
	defer v.open()
	l := w.Lane()
	l.Append(Stdout, 1, numbered("c", 0, 100))
	<-v.entered // the writer is now stuck on the disk with an empty ring
	sent := 100
	const n = 50
	for i := 1; i < n; i++ {
		l.Append(Stdout, 1, numbered("c", i, 100))
		sent += 100
	}
	w.Append(Stderr, 2, numbered("s", 0, 300))
	sent += 300
	s := w.Stats()
	// 1024 bytes hold seven 136-byte records; the shared lane takes its one.
	if s.LostEvents != n-1-7 || s.LostBytes != 100*(n-1-7) {
		t.Fatalf("while stalled: Stats = %+v, want %d chunks of 100 lost", s, n-1-7)
	}
	v.open()
	closeOK(t, w)
	written := 0
	var report []string
	for _, line := range lines(read(t, filepath.Join(dir, "exec.log"))) {
		var e entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		if e.S == "system" {
			report = append(report, e.D)
			continue
		}
		written += len(e.D)
	}
	s = w.Stats()
	if uint64(sent-written) != s.LostBytes {
		t.Errorf("sent %d, written %d, but LostBytes = %d", sent, written, s.LostBytes)
	}
	want := fmt.Sprintf("--- exec.log: lost %d bytes in %d chunks (buffer full) ---\n", s.LostBytes, s.LostEvents)
	if len(report) != 1 || report[0] != want {
		t.Errorf("report lines %q, want [%q]", report, want)
	}
}

// Losses are reported per episode: each note counts only what was lost
// since the one before.
func TestOverflowReportedSinceLast(t *testing.T) {
	dir := t.TempDir()
	v := newValve()
	o := Options{Now: fixed, BufferSize: 256}
	o.writeHook = v.hook
	w := open(t, dir, o)
	defer v.open()
	l := w.Lane()
	var lost []uint64
	for episode := range 2 {
		before := w.Stats().LostBytes
		tag := "e" + strconv.Itoa(episode)
		v.shut()
		l.Append(Stdout, 1, numbered(tag, 0, 60))
		<-v.entered
		for i := 1; i < 20; i++ {
			l.Append(Stdout, 1, numbered(tag, i, 60))
		}
		lost = append(lost, w.Stats().LostBytes-before)
		v.open()
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(read(t, filepath.Join(dir, "exec.log")), "lost") != episode+1 {
			if time.Now().After(deadline) {
				t.Fatalf("no loss note after episode %d", episode)
			}
			time.Sleep(time.Millisecond)
		}
	}
	closeOK(t, w)
	var notes []uint64
	for _, line := range lines(read(t, filepath.Join(dir, "exec.log"))) {
		var e entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		if e.S != "system" {
			continue
		}
		var b, c uint64
		if _, err := fmt.Sscanf(e.D, "--- exec.log: lost %d bytes in %d chunks (buffer full) ---\n", &b, &c); err != nil {
			t.Fatalf("note %q: %v", e.D, err)
		}
		notes = append(notes, b)
	}
	if fmt.Sprint(notes) != fmt.Sprint(lost) || lost[0] == 0 || lost[1] == 0 {
		t.Fatalf("notes report %v lost bytes, want %v", notes, lost)
	}
}

func TestWriteErrorsReturnedByClose(t *testing.T) {
	dir := t.TempDir()
	disk := errors.New("disk on fire")
	o := Options{Now: fixed}
	o.writeHook = func([]byte) error { return disk }
	w := open(t, dir, o)
	for i := range 20 {
		w.Append(Stdout, 1, numbered("x", i, 10))
		time.Sleep(100 * time.Microsecond)
	}
	err := w.Close()
	if !errors.Is(err, disk) {
		t.Fatalf("Close = %v, want %v", err, disk)
	}
	s := w.Stats()
	if s.Errors == 0 || s.Lines != 0 {
		t.Fatalf("Stats = %+v", s)
	}
	if s.Errors > maxErrors && !strings.Contains(err.Error(), "more errors") {
		t.Fatalf("Close = %v, want the extra errors counted", err)
	}
	if err2 := w.Close(); err2 != err {
		t.Fatalf("second Close = %v, want %v", err2, err)
	}
}

func TestAppendAfterClose(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, Options{Now: fixed})
	l := w.Lane()
	closeOK(t, w)
	l.Append(Stdout, 1, []byte("late"))
	w.Append(Stdout, 1, []byte("later"))
	w.System("latest")
	w.Lane().Append(Stdout, 1, []byte("x"))
	if s := w.Stats(); s.LostEvents != 4 || s.LostBytes != 4+5+7+1 || s.Lines != 0 {
		t.Fatalf("Stats = %+v", s)
	}
	if got := read(t, filepath.Join(dir, "exec.log")); got != "" {
		t.Fatalf("exec.log = %q", got)
	}
}

func TestLargeChunkSplit(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, Options{Now: fixed, BufferSize: 1024})
	l := w.Lane()
	// Max 480 data bytes a record; '€' is 3 bytes, so every cut point
	// lands inside one unless the split backs up to a boundary.
	data := []byte(strings.Repeat("€", 1000)) // 3000 bytes
	for len(data) > 0 {                       // feed it as the ring frees up
		if w.Stats().LostEvents > 0 {
			t.Fatal("lost")
		}
		n := min(len(data), 399)
		l.Append(Stdout, 1, data[:n])
		data = data[n:]
		time.Sleep(time.Millisecond)
	}
	big := []byte(strings.Repeat("€", 200)) // 600 bytes: two records
	l.Append(Stdout, 2, big)
	w.System(strings.Repeat("s", 479)) // 480 with the newline: fits one record
	for w.Stats().Lines < 11 {         // 8 lines of 399, 2 for big, 1 here
		time.Sleep(time.Millisecond)
	}
	w.System(strings.Repeat("s", 480)) // the newline needs its own
	closeOK(t, w)
	var id2 []string
	var sys []string
	for _, line := range lines(read(t, filepath.Join(dir, "exec.log"))) {
		var e entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		if strings.ContainsRune(e.D, '\uFFFD') {
			t.Fatalf("split inside a character: %q", e.D)
		}
		switch {
		case e.S == "system":
			sys = append(sys, e.D)
		case *e.ID == 2:
			id2 = append(id2, e.D)
		}
	}
	if len(id2) != 2 || id2[0]+id2[1] != string(big) {
		t.Errorf("big chunk came out as %d lines", len(id2))
	}
	want := []string{strings.Repeat("s", 479) + "\n", strings.Repeat("s", 480), "\n"}
	if strings.Join(sys, "|") != strings.Join(want, "|") {
		t.Errorf("system lines %q", sys)
	}
}

func TestLaneAppendAllocs(t *testing.T) {
	w := open(t, t.TempDir(), Options{Now: fixed})
	defer closeOK(t, w)
	l := w.Lane()
	chunk := numbered("alloc", 0, 64)
	l.Append(Stdout, 1, chunk)
	if n := testing.AllocsPerRun(1000, func() { l.Append(Stdout, 1, chunk) }); n != 0 {
		t.Errorf("Lane.Append: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { l.AppendAt(t0, Stdout, 1, chunk) }); n != 0 {
		t.Errorf("Lane.AppendAt: %v allocations, want 0", n)
	}
	w.Append(Stdout, 1, chunk)
	if n := testing.AllocsPerRun(1000, func() { w.Append(Stdout, 1, chunk) }); n != 0 {
		t.Errorf("Writer.Append: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { w.System("note") }); n != 0 {
		t.Errorf("Writer.System: %v allocations, want 0", n)
	}
}

func TestOpenError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := Open(file, Options{}); err == nil || !strings.HasPrefix(err.Error(), "execlog: ") {
		t.Fatalf("Open on a file = %v, want an execlog error", err)
	}
}

// Every chunk is either in the file or counted lost, even for appends that
// race with Close.
func TestCloseAccountsEveryAppend(t *testing.T) {
	for round := range 20 {
		dir := t.TempDir()
		w := open(t, dir, Options{Now: fixed, BufferSize: 4096})
		var wg sync.WaitGroup
		var appended [3]int
		start := make(chan struct{})
		for p := range 3 {
			wg.Go(func() {
				var l *Lane
				if p == 0 {
					l = w.Lane()
				}
				<-start
				for i := range 2000 {
					if l != nil {
						l.Append(Stdout, 1, []byte("lane chunk\n"))
					} else {
						w.Append(Stdout, 1, []byte("shared chunk\n"))
					}
					appended[p]++
					if i == 200*(round%5) && p == 1 {
						go w.Close()
					}
				}
			})
		}
		close(start)
		wg.Wait()
		closeErr := w.Close()
		if closeErr != nil {
			t.Fatal(closeErr)
		}
		written := 0
		if s := read(t, filepath.Join(dir, "exec.log")); s != "" {
			for _, line := range lines(s) {
				if !strings.Contains(line, `"s":"system"`) {
					written++
				}
			}
		}
		total := appended[0] + appended[1] + appended[2]
		if st := w.Stats(); uint64(written)+st.LostEvents != uint64(total) {
			t.Fatalf("round %d: %d appended, %d written + %d lost", round, total, written, st.LostEvents)
		}
	}
}
