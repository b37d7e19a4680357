package host

import (
	"runtime/debug"
	"time"
)

// trimQuiet is how long removals must have stopped before the daemon gives
// memory back.
const trimQuiet = time.Second

// trimmer gives memory back to the system once sandboxes have been removed
// and no removal has come for quiet: the loops drop their pools' idle
// buffers, and the runtime returns freed pages at once instead of over
// minutes. A host that tears down a thousand sandboxes then costs what it
// did before them. The forced collection pauses the loops for well under a
// millisecond, once per burst of removals, never while sandboxes are only
// being added or served.
func (h *Host) trimmer(quiet time.Duration) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-h.stopping.Done():
			t.Stop()
			return
		case <-h.removed:
			t.Reset(quiet)
		case <-t.C:
			for _, l := range h.loops {
				select {
				case <-l.Trim():
				case <-h.stopping.Done():
					return
				}
			}
			debug.FreeOSMemory()
			h.trims.Add(1)
		}
	}
}
