package serve

import (
	"context"
	"encoding/json"
	"errors"
	"expvar"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"reflect"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agentrelay/agentrelay/execlog"
)

// serveDebug serves pprof, expvar (with memstats), the relay's counters as
// JSON (/stats) and as Prometheus text (/metrics) on a loopback address.
func serveDebug(addr string, srv Server, xl *execlog.Writer) (string, func(), error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", nil, fmt.Errorf("--debug-addr: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", nil, fmt.Errorf("--debug-addr %s: must be a loopback address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("--debug-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/debug/vars", expvar.Handler())
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(snapshot(srv, xl))
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&statsCollector{srv: srv, xl: xl})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Println("debug server:", err)
		}
	}()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		hs.Shutdown(ctx)
	}
	return ln.Addr().String(), stop, nil
}

// snapshot flattens the relay's and exec.log's counters into name → value,
// the one place both /stats and /metrics read from.
func snapshot(srv Server, xl *execlog.Writer) map[string]uint64 {
	m := map[string]uint64{}
	flatten(m, "", srv.Stats())
	if xl != nil {
		flatten(m, "ExecLog", xl.Stats())
	}
	return m
}

func flatten(m map[string]uint64, prefix string, v any) {
	rv := reflect.ValueOf(v)
	for i := range rv.NumField() {
		f := rv.Field(i)
		if f.CanUint() {
			m[prefix+rv.Type().Field(i).Name] = f.Uint()
		} else if f.CanInt() {
			m[prefix+rv.Type().Field(i).Name] = uint64(f.Int())
		}
	}
}

// statsCollector reads the counters at scrape time; the relay's loop only
// ever writes plain atomics.
type statsCollector struct {
	srv Server
	xl  *execlog.Writer
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	for name, v := range snapshot(c.srv, c.xl) {
		kind := prometheus.CounterValue
		if name == "ClientsActive" || name == "SessionsActive" {
			kind = prometheus.GaugeValue
		}
		desc := prometheus.NewDesc("relay_"+snake(name), "relay counter "+name, nil, nil)
		ch <- prometheus.MustNewConstMetric(desc, kind, float64(v))
	}
}

func snake(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			if i > 0 && !(s[i-1] >= 'A' && s[i-1] <= 'Z') {
				b = append(b, '_')
			}
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return string(b)
}
