package host

import (
	"net/http"
	"reflect"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrelay/agentrelay/relay"
)

// LoopStats is what a loop reports about itself.
type LoopStats struct {
	BusyNanos          uint64 // time spent handling events rather than waiting
	PoolLent, PoolIdle int64  // bytes of the loop's pool lent out, kept idle
}

// loopStats reads a loop's own counters.
func loopStats(l *relay.Loop) LoopStats {
	s := l.Stats()
	return LoopStats{BusyNanos: uint64(s.Busy), PoolLent: s.PoolLent, PoolIdle: s.PoolIdle}
}

// HostStats are the daemon's totals.
type HostStats struct {
	Sandboxes    map[string]int `json:"sandboxes"` // by state
	Loops        []LoopInfo     `json:"loops"`
	BudgetUsed   int64          `json:"budget_used_bytes"`
	BudgetMax    int64          `json:"budget_max_bytes"` // 0: no host-wide budget
	BudgetRefuse uint64         `json:"budget_refused"`
}

// LoopInfo is one loop's share.
type LoopInfo struct {
	Index     int       `json:"index"`
	Sandboxes int       `json:"sandboxes"` // relays it holds, in any state but finished
	Stats     LoopStats `json:"stats"`
}

// Stats returns the daemon's totals.
func (h *Host) Stats() HostStats {
	s := HostStats{Sandboxes: map[string]int{StateWaiting: 0, StateServing: 0, StateGuestGone: 0, StateStopped: 0},
		BudgetUsed: h.budget.Used(), BudgetMax: h.budget.Max(), BudgetRefuse: h.budget.Refused()}
	for _, sb := range h.sandboxes() {
		s.Sandboxes[sb.state()]++
	}
	for i, l := range h.loops {
		s.Loops = append(s.Loops, LoopInfo{Index: i, Sandboxes: l.Relays(), Stats: loopStats(l)})
	}
	return s
}

func (sb *sandbox) state() string {
	if sb.r == nil {
		return StateGuestGone
	}
	return sb.r.State().String()
}

// StatsHandler answers /stats: {"host": HostStats, "sandboxes": [Info]}.
func (h *Host) StatsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, struct {
			Host      HostStats `json:"host"`
			Sandboxes []Info    `json:"sandboxes"`
		}{h.Stats(), h.List()})
	})
}

// Collector exposes every sandbox's counters, labelled sandbox="name", and
// the host's totals. Series are made at scrape time from the registry, so a
// removed sandbox's series are gone from the next scrape.
func (h *Host) Collector() prometheus.Collector { return hostCollector{h} }

type hostCollector struct{ h *Host }

var (
	sandboxDescs = func() map[string]*prometheus.Desc {
		m := make(map[string]*prometheus.Desc, len(Metrics))
		for _, x := range Metrics {
			m[x.Field] = prometheus.NewDesc(x.Name, x.Help, []string{"sandbox"}, nil)
		}
		return m
	}()
	sandboxStateDesc = prometheus.NewDesc("relay_host_sandbox_state", "Always 1; the state label gives the sandbox's state: waiting, serving, guest_gone or stopped.", []string{"sandbox", "state"}, nil)
	sandboxesDesc    = prometheus.NewDesc("relay_host_sandboxes", "Sandboxes the daemon holds, by state.", []string{"state"}, nil)
	loopRelaysDesc   = prometheus.NewDesc("relay_host_loop_sandboxes", "Sandboxes placed on each loop and not yet finished.", []string{"loop"}, nil)
	loopBusyDesc     = prometheus.NewDesc("relay_host_loop_busy_seconds_total", "Time each loop spent handling events rather than waiting for them.", []string{"loop"}, nil)
	poolLentDesc     = prometheus.NewDesc("relay_host_loop_pool_lent_bytes", "Bytes of each loop's buffer pool lent out now.", []string{"loop"}, nil)
	poolIdleDesc     = prometheus.NewDesc("relay_host_loop_pool_idle_bytes", "Bytes of each loop's buffer pool kept idle for reuse.", []string{"loop"}, nil)
	budgetUsedDesc   = prometheus.NewDesc("relay_host_budget_used_bytes", "Bytes the host-wide memory budget has lent to sandboxes' client buffers.", nil, nil)
	budgetMaxDesc    = prometheus.NewDesc("relay_host_budget_max_bytes", "The host-wide memory budget (--memory-budget); 0 if none.", nil, nil)
	budgetRefDesc    = prometheus.NewDesc("relay_host_budget_refused_total", "Buffer growths the host-wide memory budget refused.", nil, nil)
)

func (c hostCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range sandboxDescs {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{sandboxStateDesc, sandboxesDesc, loopRelaysDesc, loopBusyDesc, poolLentDesc, poolIdleDesc, budgetUsedDesc, budgetMaxDesc, budgetRefDesc} {
		ch <- d
	}
}

func (c hostCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.h
	states := map[string]int{StateWaiting: 0, StateServing: 0, StateGuestGone: 0, StateStopped: 0}
	for _, sb := range h.sandboxes() {
		st := sb.state()
		states[st]++
		ch <- prometheus.MustNewConstMetric(sandboxStateDesc, prometheus.GaugeValue, 1, sb.name, st)
		if sb.r == nil {
			continue
		}
		snap := map[string]uint64{}
		Flatten(snap, "", sb.r.Stats())
		if sb.xl != nil {
			Flatten(snap, "ExecLog", sb.xl.Stats())
		}
		for _, x := range Metrics {
			v, ok := snap[x.Field]
			if !ok {
				continue
			}
			kind, f := prometheus.CounterValue, float64(v)
			if x.Gauge {
				kind = prometheus.GaugeValue
			}
			if x.Nanos {
				f /= 1e9
			}
			ch <- prometheus.MustNewConstMetric(sandboxDescs[x.Field], kind, f, sb.name)
		}
	}
	for st, n := range states {
		ch <- prometheus.MustNewConstMetric(sandboxesDesc, prometheus.GaugeValue, float64(n), st)
	}
	for i, l := range h.loops {
		idx := strconv.Itoa(i)
		ch <- prometheus.MustNewConstMetric(loopRelaysDesc, prometheus.GaugeValue, float64(l.Relays()), idx)
		ls := loopStats(l)
		ch <- prometheus.MustNewConstMetric(loopBusyDesc, prometheus.CounterValue, float64(ls.BusyNanos)/1e9, idx)
		ch <- prometheus.MustNewConstMetric(poolLentDesc, prometheus.GaugeValue, float64(ls.PoolLent), idx)
		ch <- prometheus.MustNewConstMetric(poolIdleDesc, prometheus.GaugeValue, float64(ls.PoolIdle), idx)
	}
	ch <- prometheus.MustNewConstMetric(budgetUsedDesc, prometheus.GaugeValue, float64(h.budget.Used()))
	ch <- prometheus.MustNewConstMetric(budgetMaxDesc, prometheus.GaugeValue, float64(h.budget.Max()))
	ch <- prometheus.MustNewConstMetric(budgetRefDesc, prometheus.CounterValue, float64(h.budget.Refused()))
}

// Flatten adds the integer fields of v (a relay.Stats or an
// execlog.Stats) to m under prefix and their Go names, the keys of Metrics.
func Flatten(m map[string]uint64, prefix string, v any) {
	flattenNamed(m, prefix, v, func(s string) string { return s })
}

// flattenNamed is Flatten with each field's name passed through name.
func flattenNamed(m map[string]uint64, prefix string, v any, name func(string) string) {
	rv := reflect.ValueOf(v)
	for i := range rv.NumField() {
		f := rv.Field(i)
		key := prefix + name(rv.Type().Field(i).Name)
		if f.CanUint() {
			m[key] = f.Uint()
		} else if f.CanInt() {
			m[key] = uint64(f.Int())
		}
	}
}
