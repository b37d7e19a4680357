package host

import (
	"path/filepath"
	"strconv"
	"testing"
)

// Removing sandboxes makes the daemon give memory back once removals stop:
// the loops' pools keep no idle buffer afterwards.
func TestTrimAfterRemovals(t *testing.T) {
	dir := shortDir(t)
	h, err := New(Options{Loops: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	const n = 20
	for i := range n {
		g := newGuest(t, dir, "g"+strconv.Itoa(i), echoGuest)
		if _, err := h.Add(bg, "s"+strconv.Itoa(i), Spec{Guest: g.spec(), Socket: filepath.Join(dir, "s"+strconv.Itoa(i)+".sock")}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every sandbox serving", func() bool { return h.Stats().Sandboxes[StateServing] == n })
	idle := func() (b int64) {
		for _, l := range h.loops {
			b += l.Stats().PoolIdle
		}
		return b
	}
	if idle() == 0 {
		t.Fatal("the pools kept nothing after the guests' core.ready: nothing to trim, the test proves nothing")
	}
	for i := range n {
		if err := h.Remove("s" + strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "a trim after the removals", func() bool { return h.trims.Load() > 0 })
	eventually(t, "the pools to be empty", func() bool { return idle() == 0 })
}
