package serve

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrelay/agentrelay/execlog"
	"github.com/agentrelay/agentrelay/host"
)

// metrics lists every counter; host.Metrics is the one table both a
// single relay and a host daemon expose.
var metrics = host.Metrics

// statsCollector reads the counters at scrape time; the relay's loop only
// ever writes plain atomics.
type statsCollector struct {
	srv Server
	xl  *execlog.Writer
}

var descs = func() map[string]*prometheus.Desc {
	m := make(map[string]*prometheus.Desc, len(metrics))
	for _, x := range metrics {
		m[x.Field] = prometheus.NewDesc(x.Name, x.Help, nil, nil)
	}
	return m
}()

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, x := range metrics {
		ch <- descs[x.Field]
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	snap := snapshot(c.srv, c.xl)
	for _, x := range metrics {
		v, ok := snap[x.Field]
		if !ok {
			continue // exec.log is off
		}
		kind, f := prometheus.CounterValue, float64(v)
		if x.Gauge {
			kind = prometheus.GaugeValue
		}
		if x.Nanos {
			f /= 1e9
		}
		ch <- prometheus.MustNewConstMetric(descs[x.Field], kind, f)
	}
}

// BuildInfo is relay_build_info: always 1, its labels say which build runs.
func BuildInfo() prometheus.Collector {
	version, revision := "(devel)", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "relay_build_info",
		Help:        "Always 1; the labels give the relay's module version, VCS revision and Go version.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}
