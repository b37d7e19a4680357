package main

import (
	"fmt"
	"strings"
)

// A goal is one row of the socket-guest path's acceptance table: a relay's
// median against its floor's, from the same run.
type goal struct {
	figure   string
	workload string // under unixPrefix
	unit     string
	floor    string // the impl the relay is held against
	show     func(float64) string
	// meets says whether the relay's figure r meets the goal against the
	// floor's f, and how it reads; nil for a figure shown without a goal.
	meets  func(r, f float64) bool
	target string
}

const unixPrefix = "guest=unix/"

func micros(v float64) string { return fmt.Sprintf("%.1f µs", v/1e3) }
func count(v float64) string  { return fmt.Sprintf("%.2f", v) }
func rate(v float64) string {
	if v >= 1e6 {
		return fmt.Sprintf("%.2f M/s", v/1e6)
	}
	return fmt.Sprintf("%.1f k/s", v/1e3)
}

// goals are issue 8's targets, in its order, with the context switches it
// quotes as a reading aid.
var goals = []goal{
	{"round trip 64 B, p50", "rt/size=64", "p50-ns", "forwarder", micros,
		func(r, f float64) bool { return r <= 1.2*f }, "≤ 1.2×"},
	{"relay CPU per round trip", "rt/size=64", "cpu-ns/frame", "forwarder", micros,
		func(r, f float64) bool { return r <= 1.5*f }, "≤ 1.5×"},
	{"system calls per round trip", "rt/size=64", "syscalls/frame", "forwarder", count,
		func(r, f float64) bool { return r <= f+1 }, "≤ floor + 1"},
	{"context switches per round trip", "rt/size=64", "ctxsw/frame", "forwarder", count, nil, ""},
	{"stream 64 KiB", "stream/size=64K", "frames/s", "forwarder", rate,
		func(r, f float64) bool { return r >= 0.9*f }, "≥ 0.9×"},
	{"stream 1 KiB", "stream/size=1K", "frames/s", "forwarder", rate,
		func(r, f float64) bool { return r >= 0.9*f }, "≥ 0.9×"},
	{"fan-in 16 × 128 B", "fanin/clients=16/size=128", "frames/s", "framefwd", rate,
		func(r, f float64) bool { return r >= 0.85*f }, "≥ 0.85×"},
}

// Targets renders the acceptance table of the socket-guest path (medians
// of the run, each relay as a ratio of its floor, and the reactor's ratio
// round by round: on a shared machine a disturbed round shows there) and,
// below it, the reactor's figures on the in-process path, which must not
// regress from one run to the next. It returns "" if the run has no
// socket-guest workloads.
func Targets(rs []Result) string {
	t := Medians(rs)
	var b strings.Builder
	b.WriteString("| figure (guest=unix) | floor | reactor | ÷ floor | goroutine | ÷ floor | target | reactor meets it | reactor ÷ floor by round |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	rows := 0
	for _, g := range goals {
		w := unixPrefix + g.workload
		f, ok := t.Get(w, g.floor, g.unit)
		if !ok {
			continue
		}
		rows++
		fmt.Fprintf(&b, "| %s | %s %s |", g.figure, g.floor, g.show(f))
		var meets string
		for _, impl := range []string{"reactor", "goroutine"} {
			r, ok := t.Get(w, impl, g.unit)
			if !ok {
				b.WriteString(" — | — |")
				continue
			}
			fmt.Fprintf(&b, " %s | %s |", g.show(r), ratio(r, f))
			if impl == "reactor" && g.meets != nil {
				meets = "no"
				if g.meets(r, f) {
					meets = "yes"
				}
			}
		}
		fmt.Fprintf(&b, " %s | %s | %s |\n", g.target, meets, byRound(rs, w, g.floor, g.unit))
	}
	if rows == 0 {
		return ""
	}
	b.WriteString("\n| reactor, in-process echo path (must not regress) | value |\n|---|---|\n")
	for _, g := range goals {
		if v, ok := t.Get(g.workload, "reactor", g.unit); ok {
			fmt.Fprintf(&b, "| %s | %s |\n", g.figure, g.show(v))
		}
	}
	return b.String()
}

// byRound pairs the n-th reactor result of workload w with the n-th of
// floor (both ran in round n) and lists their ratios.
func byRound(rs []Result, w, floor, unit string) string {
	var relay, fl []float64
	for _, r := range rs {
		v, ok := r.Metrics[unit]
		if r.Workload != w || !ok {
			continue
		}
		switch r.Impl {
		case "reactor":
			relay = append(relay, v)
		case floor:
			fl = append(fl, v)
		}
	}
	var out []string
	for i := range min(len(relay), len(fl)) {
		out = append(out, ratio(relay[i], fl[i]))
	}
	return strings.Join(out, " ")
}

func ratio(r, f float64) string {
	if f == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", r/f)
}
