package serve

import (
	"net/http"
	"sync/atomic"
)

// health answers /healthz: 200 only while the guest is ready and the relay
// serves clients, 503 with the reason otherwise, so a supervisor or load
// balancer stops sending work to a relay that is starting, draining, or
// whose guest stream has ended.
type health struct {
	ended func() bool  // the guest stream has ended
	state atomic.Value // string: "" while serving, else why not
}

func newHealth(ended func() bool) *health {
	h := &health{ended: ended}
	h.state.Store("waiting for the guest's core.ready")
	return h
}

// set records why the relay does not serve; "" means it does.
func (h *health) set(why string) { h.state.Store(why) }

func (h *health) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	why := h.state.Load().(string)
	if why == "" && h.ended() {
		why = "guest stream ended"
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if why != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(why + "\n"))
		return
	}
	w.Write([]byte("ok\n"))
}
