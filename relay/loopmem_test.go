//go:build !race

package relay_test

import (
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/relay"
)

// An idle relay costs a few KiB of heap: no client slots, no buffers, no
// session table beyond an empty map (idleRelayHeap bounds it; the whole of
// the process's RSS per sandbox is measured in make bench).
func TestLoopIdleRelayHeap(t *testing.T) {
	const idleRelayHeap = 16 << 10
	l := startLoop(t)
	dir := t.TempDir()
	const n = 400
	gs := make([]*sockGuest, n)
	for i := range n {
		gs[i] = newSockGuest(t, true)
	}
	time.Sleep(200 * time.Millisecond) // the guests' goroutines have their buffers
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	rs := make([]*relay.Relay, n)
	for i := range n {
		r, err := l.Add(relay.Options{Socket: filepath.Join(dir, strconv.Itoa(i)), Guest: gs[i].file, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		rs[i] = r
	}
	for _, r := range rs {
		<-r.Ready()
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Stats().PoolLent != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	runtime.GC()
	runtime.ReadMemStats(&b)
	st := l.Stats()
	per := (int64(b.HeapAlloc) - int64(a.HeapAlloc) - st.PoolIdle) / n
	t.Logf("heap per idle relay: %.1f KiB (the loop's pool keeps %d KiB idle besides)", float64(per)/1024, st.PoolIdle>>10)
	// Each relay reads its guest's core.ready into a buffer and gives it
	// back in the same pass, so 400 relays becoming ready at once share a
	// few buffers instead of holding 400.
	if st.PoolIdle > 1<<20 {
		t.Fatalf("the loop's pool keeps %d KiB idle: buffers were held from one pass to the next", st.PoolIdle>>10)
	}
	if st.PoolLent != 0 || per > idleRelayHeap {
		t.Fatalf("idle relays hold %d bytes of heap each and %d bytes lent; want at most %d and none", per, st.PoolLent, idleRelayHeap)
	}
}
