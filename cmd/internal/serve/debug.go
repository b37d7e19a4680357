package serve

import (
	"context"
	"encoding/json"
	"errors"
	"expvar"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agentrelay/agentrelay/execlog"
	"github.com/agentrelay/agentrelay/host"
)

// serveDebug serves, on ln (a loopback listener bound at start-up), pprof,
// expvar (with memstats), the relay's counters as JSON (/stats) and as
// Prometheus text (/metrics), and /healthz.
func serveDebug(log *slog.Logger, ln net.Listener, srv Server, xl *execlog.Writer, h *health) (stop func()) {
	stats := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(snapshot(srv, xl))
	})
	return ServeDebug(log, ln, stats, &statsCollector{srv: srv, xl: xl}, h)
}

// ServeDebug serves, on ln, what every debug endpoint of the binary has
// (pprof, expvar with memstats, the Go runtime's and the process's metrics
// and the build's) with stats at /stats, collector's metrics beside them at
// /metrics and health at /healthz. stop shuts it down, waiting up to a
// second for requests under way.
func ServeDebug(log *slog.Logger, ln net.Listener, stats http.Handler, collector prometheus.Collector, health http.Handler) (stop func()) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/debug/vars", expvar.Handler())
	mux.Handle("/stats", stats)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collector, BuildInfo())
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/healthz", health)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("debug endpoint stopped", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		hs.Shutdown(ctx)
	}
}

// snapshot flattens the relay's and exec.log's counters into name → value,
// the one place both /stats and /metrics read from.
func snapshot(srv Server, xl *execlog.Writer) map[string]uint64 {
	m := map[string]uint64{}
	host.Flatten(m, "", srv.Stats())
	if xl != nil {
		host.Flatten(m, "ExecLog", xl.Stats())
	}
	return m
}
