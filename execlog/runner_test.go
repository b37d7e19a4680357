package execlog

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Writers sharing a Runner each get every line their producers appended, in
// order, written as they come (not only at Close), with one goroutine for
// all of them.
func TestRunnerServesManyWriters(t *testing.T) {
	r := NewRunner()
	defer r.Close()
	base := runtime.NumGoroutine()
	const writers, producers, chunks = 20, 2, 500
	dirs := make([]string, writers)
	ws := make([]*Writer, writers)
	for i := range ws {
		dirs[i] = t.TempDir()
		ws[i] = open(t, dirs[i], Options{Now: fixed, Runner: r, BufferSize: 64 << 10})
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Fatalf("%d goroutines after opening %d writers on a Runner, %d before", n, writers, base)
	}
	var wg sync.WaitGroup
	for i, w := range ws {
		for p := range producers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l := w.Lane()
				for k := range chunks {
					l.Append(Stdout, uint64(p+1), []byte(fmt.Sprintf("w%d p%d %d\n", i, p, k)))
					if k%64 == 0 {
						time.Sleep(time.Millisecond) // let the lane drain: nothing may be lost
					}
				}
			}()
		}
	}
	wg.Wait()
	// Written without Close: the Runner works as appends come.
	deadline := time.Now().Add(5 * time.Second)
	for _, w := range ws {
		for w.Stats().Lines != producers*chunks {
			if time.Now().After(deadline) {
				t.Fatalf("Runner wrote %d lines of %d before Close", w.Stats().Lines, producers*chunks)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for i, w := range ws {
		w.System("--- sandbox stopped ---")
		closeOK(t, w)
		got := lines(read(t, filepath.Join(dirs[i], "exec.log")))
		if len(got) != producers*chunks+1 || !strings.Contains(got[len(got)-1], "sandbox stopped") {
			t.Fatalf("writer %d: %d lines, last %q", i, len(got), got[len(got)-1])
		}
		next := make([]int, producers)
		for _, line := range got[:len(got)-1] {
			var wi, p, k int
			if _, err := fmt.Sscanf(line[strings.Index(line, `"d":"`)+5:], "w%d p%d %d", &wi, &p, &k); err != nil || wi != i || k != next[p] {
				t.Fatalf("writer %d: line %q out of order or foreign (want p%d %d)", i, line, p, next[p])
			}
			next[p]++
		}
		if s := w.Stats(); s.LostEvents != 0 {
			t.Fatalf("writer %d lost %d chunks", i, s.LostEvents)
		}
	}
}

// A lane's buffer is only allocated once something is appended to it.
func TestLaneAllocatesOnFirstAppend(t *testing.T) {
	w := open(t, t.TempDir(), Options{Now: fixed})
	defer closeOK(t, w)
	l := w.Lane()
	if l.buf != nil {
		t.Fatal("a new lane holds a buffer")
	}
	l.Append(Stdout, 1, []byte("x"))
	if len(l.buf) != DefaultBufferSize {
		t.Fatalf("lane buffer %d bytes after an append, want %d", len(l.buf), DefaultBufferSize)
	}
}
