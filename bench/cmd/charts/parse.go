package main

import (
	"bufio"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Result is one benchmark line of BenchmarkRelay or BenchmarkHost.
type Result struct {
	Suite    string // "Relay" or "Host": the benchmark's name after Benchmark
	Workload string // the name between Relay/ and /impl=, e.g. "stream/size=64K"
	Impl     string // reactor, goroutine, floor; host, serve
	N        int
	Metrics  map[string]float64 // unit → value: "ns/op", "MB/s", "p50-ns", ...
}

// suites are the benchmarks whose results Parse reads.
var suites = []string{"Relay", "Host"}

// ParseLine parses one line of `go test -bench` output; ok is false for
// anything but a complete BenchmarkRelay or BenchmarkHost result.
func ParseLine(line string) (r Result, ok bool) {
	f := strings.Fields(line)
	if len(f) < 4 || len(f)%2 != 0 {
		return r, false
	}
	var name string
	for _, s := range suites {
		if rest, found := strings.CutPrefix(f[0], "Benchmark"+s+"/"); found {
			r.Suite, name = s, rest
		}
	}
	if r.Suite == "" {
		return r, false
	}
	// The GOMAXPROCS suffix: "-2".
	if i := strings.LastIndexByte(name, '-'); i >= 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	i := strings.LastIndex(name, "/impl=")
	if i <= 0 {
		return r, false
	}
	r.Workload, r.Impl = name[:i], name[i+len("/impl="):]
	if r.Impl == "" || strings.Contains(r.Impl, "/") {
		return r, false
	}
	n, err := strconv.Atoi(f[1])
	if err != nil || n <= 0 {
		return r, false
	}
	r.N = n
	r.Metrics = make(map[string]float64, (len(f)-2)/2)
	for j := 2; j < len(f); j += 2 {
		v, err := strconv.ParseFloat(f[j], 64)
		if err != nil {
			return Result{}, false
		}
		r.Metrics[f[j+1]] = v
	}
	return r, true
}

// Parse reads every BenchmarkRelay and BenchmarkHost result from r.
func Parse(r io.Reader) ([]Result, error) {
	var rs []Result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if res, ok := ParseLine(sc.Text()); ok {
			rs = append(rs, res)
		}
	}
	return rs, sc.Err()
}

// Table holds the median of every metric: workload → impl → unit → value.
type Table map[string]map[string]map[string]float64

// Get returns a median and whether there is one.
func (t Table) Get(workload, impl, unit string) (float64, bool) {
	v, ok := t[workload][impl][unit]
	return v, ok
}

// Medians reduces repeated runs (-count, or several invocations) to medians.
func Medians(rs []Result) Table {
	all := map[string]map[string]map[string][]float64{}
	for _, r := range rs {
		if all[r.Workload] == nil {
			all[r.Workload] = map[string]map[string][]float64{}
		}
		if all[r.Workload][r.Impl] == nil {
			all[r.Workload][r.Impl] = map[string][]float64{}
		}
		for u, v := range r.Metrics {
			all[r.Workload][r.Impl][u] = append(all[r.Workload][r.Impl][u], v)
		}
	}
	t := Table{}
	for w, impls := range all {
		t[w] = map[string]map[string]float64{}
		for impl, units := range impls {
			t[w][impl] = map[string]float64{}
			for u, vs := range units {
				t[w][impl][u] = median(vs)
			}
		}
	}
	return t
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Of returns the results of suite.
func Of(rs []Result, suite string) []Result {
	var out []Result
	for _, r := range rs {
		if r.Suite == suite {
			out = append(out, r)
		}
	}
	return out
}

// Failures counts the failed results of suite in r (`--- FAIL:
// BenchmarkHost/<workload>/impl=<impl>` lines, or the workload's own line
// when it failed before its sides were reported), by workload.
func Failures(r io.Reader, suite string) (map[string]int, error) {
	failed := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "--- FAIL: Benchmark"+suite+"/")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, " ")
		if i := strings.LastIndex(name, "/impl="); i >= 0 {
			name = name[:i]
		}
		failed[name]++
	}
	return failed, sc.Err()
}
