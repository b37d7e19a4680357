package main

import (
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
--- FAIL: BenchmarkRelay/stream/size=3M/impl=goroutine
BenchmarkOther/x-2	 10	 5 ns/op
PASS
`

func TestParse(t *testing.T) {
	rs, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 6 {
		t.Fatalf("parsed %d results, want 6", len(rs))
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
	for _, name := range []string{"latency.png", "throughput.png", "fanin.png", "costs.png"} {
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
