package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/agentrelay/agentrelay/bench
cpu: AMD EPYC
BenchmarkRelay/rt/size=64/impl=reactor-2         	    3214	    108156 ns/op	         0 allocs/frame	     68451 cpu-ns/frame	    105056 p50-ns	    266496 p99-ns	    491610 p99.9-ns
BenchmarkRelay/rt/size=64/impl=floor-2           	   10000	     50117 ns/op	     24000 cpu-ns/frame	     24016 p50-ns	    186818 p99-ns	    342849 p99.9-ns
BenchmarkRelay/stream/size=64K/impl=reactor-2    	    3463	    129598 ns/op	 505.69 MB/s	         0 allocs/frame	      7716 frames/s
BenchmarkRelay/stream/size=64K/impl=reactor-2    	    3463	    129598 ns/op	 300.00 MB/s	         0 allocs/frame	      7716 frames/s
BenchmarkRelay/stream/size=64K/impl=reactor-2    	    3463	    129598 ns/op	 400.00 MB/s	         0 allocs/frame	      7716 frames/s
BenchmarkRelay/fanin/clients=16/size=128/impl=goroutine-2       	   33952	      9063 ns/op	  14.12 MB/s	    110337 frames/s	        27.62 spread-%
BenchmarkRelay/guest=unix/rt/size=64/impl=reactor-2         	    3214	    108156 ns/op	         0 allocs/frame	     60000 cpu-ns/frame	    100000 p50-ns	    266496 p99-ns	    491610 p99.9-ns	 9.5 syscalls/frame	 6.2 ctxsw/frame	 20000 guest-cpu-ns/frame
BenchmarkRelay/guest=unix/rt/size=64/impl=forwarder-2         	    3214	    108156 ns/op	     20000 cpu-ns/frame	     50000 p50-ns	    166496 p99-ns	    291610 p99.9-ns	 6 syscalls/frame	 2.9 ctxsw/frame	 20000 guest-cpu-ns/frame
BenchmarkRelay/guest=unix/stream/size=1K/impl=reactor-2    	    3463	    129598 ns/op	 505.69 MB/s	         0 allocs/frame	      95000 frames/s
BenchmarkRelay/guest=unix/stream/size=1K/impl=forwarder-2    	    3463	    129598 ns/op	 505.69 MB/s	      100000 frames/s
BenchmarkRelay/guest=unix/fanin/clients=16/size=128/impl=reactor-2       	   33952	      9063 ns/op	  14.12 MB/s	    700000 frames/s	        27.62 spread-%
BenchmarkRelay/guest=unix/fanin/clients=16/size=128/impl=framefwd-2       	   33952	      9063 ns/op	  14.12 MB/s	    1000000 frames/s	        17.62 spread-%
--- FAIL: BenchmarkRelay/stream/size=3M/impl=goroutine
BenchmarkOther/x-2	 10	 5 ns/op
PASS
`

func TestParse(t *testing.T) {
	rs, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 12 {
		t.Fatalf("parsed %d results, want 12", len(rs))
	}
	r := rs[0]
	if r.Workload != "rt/size=64" || r.Impl != "reactor" || r.N != 3214 || r.Metrics["p99.9-ns"] != 491610 {
		t.Fatalf("first result: %+v", r)
	}
	f := rs[5]
	if f.Workload != "fanin/clients=16/size=128" || f.Impl != "goroutine" || f.Metrics["spread-%"] != 27.62 {
		t.Fatalf("fan-in result: %+v", f)
	}
	med := Medians(rs)
	if v, _ := med.Get("stream/size=64K", "reactor", "MB/s"); v != 400 {
		t.Fatalf("median MB/s = %v, want 400", v)
	}
	if _, ok := med.Get("rt/size=64", "floor", "allocs/frame"); ok {
		t.Fatal("a metric the floor never reported has a median")
	}
}

// The acceptance table holds each relay against the right floor: the byte
// forwarder for the round trip and streams, the frame-aware one for fan-in,
// with the thresholds (syscalls additive, the rest ratios).
func TestTargets(t *testing.T) {
	rs, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	tab := Targets(rs)
	for _, want := range []string{
		"| round trip 64 B, p50 | forwarder 50.0 µs | 100.0 µs | 2.00× | — | — | ≤ 1.2× | no | 2.00× |",
		"| relay CPU per round trip | forwarder 20.0 µs | 60.0 µs | 3.00× |",
		"| system calls per round trip | forwarder 6.00 | 9.50 | 1.58× | — | — | ≤ floor + 1 | no |",
		"| context switches per round trip | forwarder 2.90 | 6.20 | 2.14× | — | — |  |  | 2.14× |",
		"| stream 1 KiB | forwarder 100.0 k/s | 95.0 k/s | 0.95× | — | — | ≥ 0.9× | yes |",
		"| fan-in 16 × 128 B | framefwd 1.00 M/s | 700.0 k/s | 0.70× | — | — | ≥ 0.85× | no |",
		"| round trip 64 B, p50 | 105.1 µs |", // the in-process reactor
	} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	if strings.Contains(tab, "stream 64 KiB | forwarder") {
		t.Errorf("a row without a floor figure:\n%s", tab)
	}
	if Targets(nil) != "" {
		t.Error("a table from a run without the socket-guest path")
	}
}

func TestMedianEven(t *testing.T) {
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Fatalf("median = %v", m)
	}
}

func TestParseLineRejects(t *testing.T) {
	for _, l := range []string{
		"",
		"BenchmarkRelay/rt/size=64-2 10",         // no metrics
		"BenchmarkRelay/rt/size=64-2 10 5 ns/op", // no impl
		"BenchmarkRelay/rt/impl=reactor-2 x 5 ns/op",     // bad N
		"BenchmarkRelay/rt/impl=reactor-2 10 five ns/op", // bad value
		"BenchmarkRelay/rt/impl=reactor-2 10 5 ns/op 3",  // odd field
		"BenchmarkRelay/impl=reactor/rt-2 10 5 ns/op",    // impl not last
		"ok  	github.com/agentrelay/agentrelay/bench	14.346s",
	} {
		if r, ok := ParseLine(l); ok {
			t.Errorf("parsed %q as %+v", l, r)
		}
	}
}

// The whole program on the sample: every chart is written.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "bench.txt")
	if err := os.WriteFile(in, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(in, dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "targets.md")); err != nil || !bytes.Contains(b, []byte("fan-in 16")) {
		t.Fatalf("targets.md: %v\n%s", err, b)
	}
	for _, name := range []string{"latency.png", "throughput.png", "fanin.png", "costs.png",
		"latency-unix.png", "throughput-unix.png", "fanin-unix.png", "costs-unix.png"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 1000 || string(b[1:4]) != "PNG" {
			t.Fatalf("%s: %d bytes, not a PNG", name, len(b))
		}
	}
}

func FuzzParseLine(f *testing.F) {
	for _, l := range strings.Split(sample, "\n") {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, ok := ParseLine(line)
		if !ok {
			return
		}
		if r.Workload == "" || r.Impl == "" || r.N <= 0 || len(r.Metrics) == 0 {
			t.Fatalf("accepted %q as %+v", line, r)
		}
	})
}
