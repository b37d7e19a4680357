package main

import (
	"fmt"
	"math"
	"strings"
)

// A hostGoal is one row of issue 12's table: a figure of the host daemon
// (impl=host), alone or against the lone relays (impl=serve) of the same
// run.
type hostGoal struct {
	figure   string
	workload string
	unit     string
	vsServe  bool // shown as a ratio of the lone relays' figure
	show     func(float64) string
	// meets judges the host's median v (against the lone relays' s when
	// vsServe; with the host's other medians of the workload in m); nil for
	// a figure shown as a reading aid.
	meets  func(v, s float64, m map[string]float64) bool
	target string
}

func kibs(v float64) string    { return fmt.Sprintf("%.1f KiB", v) }
func mibs(v float64) string    { return fmt.Sprintf("%.0f MiB", v) }
func whole(v float64) string   { return fmt.Sprintf("%.0f", v) }
func times(v float64) string   { return fmt.Sprintf("%.2f×", v) }
func percent(v float64) string { return fmt.Sprintf("%+.1f %%", v) }

// hostGoals are issue 12's targets, in its order, at BenchmarkHost's
// default sizes.
var hostGoals = []hostGoal{
	{"1,000 idle sandboxes: RSS each above the empty daemon", "idle/sandboxes=1000", "KiB/sandbox", false, kibs,
		func(v, _ float64, _ map[string]float64) bool { return v <= 50 }, "≤ 50 KiB"},
	{"1,000 idle sandboxes: threads", "idle/sandboxes=1000", "threads", false, whole,
		func(v, _ float64, m map[string]float64) bool { return v <= m["cpus"]+8 }, "≤ CPUs + 8"},
	{"1,000 idle sandboxes: total RSS", "idle/sandboxes=1000", "rss-MiB", false, mibs, nil, ""},
	{"10,000 idle sandboxes: RSS each", "idle/sandboxes=10000", "KiB/sandbox", false, kibs,
		func(float64, float64, map[string]float64) bool { return true }, "must work"},
	{"10,000 idle sandboxes: total RSS", "idle/sandboxes=10000", "rss-MiB", false, mibs, nil, ""},
	{"round trip 64 B with 999 idle neighbours, p50", "rt/neighbours=999/size=64", "p50-ns", true, micros,
		func(v, s float64, _ map[string]float64) bool { return v <= 1.1*s }, "≤ 1.1×"},
	{"round trip 64 B with 999 idle neighbours, p99", "rt/neighbours=999/size=64", "p99-ns", true, micros, nil, ""},
	{"64 sandboxes streaming 64 KiB frames: aggregate", "stream/sandboxes=64/size=64K", "MB/s", true, mbps,
		func(v, s float64, _ map[string]float64) bool { return v >= 0.9*s }, "≥ 0.9×"},
	{"64 sandboxes streaming 64 KiB frames: total RSS", "stream/sandboxes=64/size=64K", "rss-MiB", true, mibs,
		func(v, s float64, _ map[string]float64) bool { return v <= 0.5*s }, "far less (≤ 0.5×)"},
	{"64 sandboxes streaming 64 KiB frames: total PSS", "stream/sandboxes=64/size=64K", "pss-MiB", true, mibs, nil, ""},
	{"one sandbox flooded (16 clients): another's p99 ÷ its idle p99", "isolation/flood=16x128", "p99-ratio", false, times,
		func(v, _ float64, _ map[string]float64) bool { return v <= 2 }, "≤ 2×"},
	{"adding and removing 1,000 sandboxes: descriptors", "churn/sandboxes=1000", "fd-change-%", false, percent,
		func(v, _ float64, _ map[string]float64) bool { return math.Abs(v) <= 5 }, "within 5 %"},
	{"adding and removing 1,000 sandboxes: RSS", "churn/sandboxes=1000", "rss-change-%", false, percent,
		func(v, _ float64, _ map[string]float64) bool { return math.Abs(v) <= 5 }, "within 5 %"},
}

// HostTargets renders issue 12's table from BenchmarkHost results: the
// host daemon's median for each figure, the lone relays' where the target
// compares with them (for the isolation ratio, the lone relays' own ratio
// under the same flood, as a measure of what the machine alone does), the
// verdict, and the figure round by round (a ratio where there are two
// sides). Rows whose scenario did not run say so, and rows whose scenario
// failed in some rounds (failed, from Failures) say in how many: a
// scenario that fails does not meet its target, whatever its other rounds
// gave.
func HostTargets(rs []Result, failed map[string]int) string {
	t := Medians(rs)
	var b strings.Builder
	b.WriteString("| figure | lone relays | host daemon | host ÷ lone | target | met | by round |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, g := range hostGoals {
		v, ok := t.Get(g.workload, "host", g.unit)
		fails := ""
		if n := failed[g.workload]; n > 0 {
			fails = fmt.Sprintf("failed in %d round(s)", n)
		}
		if !ok {
			state, met := "not run", ""
			if fails != "" {
				state, met = "failed", "no"
			}
			fmt.Fprintf(&b, "| %s | | %s | | %s | %s | %s |\n", g.figure, state, g.target, met, fails)
			continue
		}
		s, hasServe := t.Get(g.workload, "serve", g.unit)
		serve, rat := "—", "—"
		if hasServe {
			serve = g.show(s)
			if g.vsServe {
				rat = ratio(v, s)
			}
		}
		met := ""
		if g.meets != nil {
			met = "no"
			if (!g.vsServe || hasServe) && g.meets(v, s, t[g.workload]["host"]) {
				met = "yes"
			}
		}
		var rounds string
		if g.vsServe {
			rounds = pairByRound(rs, g.workload, g.unit, "host", "serve")
		} else {
			rounds = valuesByRound(rs, g.workload, g.unit, g.show)
		}
		if fails != "" {
			if met != "" {
				met = "no"
			}
			rounds = strings.TrimSpace(rounds + "; " + fails)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", g.figure, serve, g.show(v), rat, g.target, met, rounds)
	}
	return b.String()
}

// pairByRound pairs the n-th result of impl a for workload w with the n-th
// of impl b (both ran in round n) and lists their ratios.
func pairByRound(rs []Result, w, unit, a, b string) string {
	var as, bs []float64
	for _, r := range rs {
		v, ok := r.Metrics[unit]
		if r.Workload != w || !ok {
			continue
		}
		switch r.Impl {
		case a:
			as = append(as, v)
		case b:
			bs = append(bs, v)
		}
	}
	var out []string
	for i := range min(len(as), len(bs)) {
		out = append(out, ratio(as[i], bs[i]))
	}
	return strings.Join(out, " ")
}

// valuesByRound lists the host's figure for workload w, round by round.
func valuesByRound(rs []Result, w, unit string, show func(float64) string) string {
	var out []string
	for _, r := range rs {
		if v, ok := r.Metrics[unit]; ok && r.Workload == w && r.Impl == "host" {
			out = append(out, show(v))
		}
	}
	return strings.Join(out, ", ")
}
