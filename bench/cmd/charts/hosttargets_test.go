package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two rounds of BenchmarkHost as go test prints them (the 10,000-sandbox
// scenario not run), and a BenchmarkRelay line that must stay out of the
// host table.
const hostSample = `goos: linux
BenchmarkHost/idle/sandboxes=1000/impl=host-2         	       1	6053311394 ns/op	       40.5 KiB/sandbox	         2.000 cpus	        11.18 empty-rss-MiB	      2014 fds	   3846070 put-p50-ns	 104532618 put-p99-ns	       51.0 rss-MiB	      11 threads
BenchmarkHost/rt/neighbours=999/size=64/impl=host-2   	       1	     11000 ns/op	     100000 p50-ns	    127118 p99-ns	    361110 p99.9-ns
BenchmarkHost/rt/neighbours=999/size=64/impl=serve-2  	       1	     18800 ns/op	     100000 p50-ns	    97058 p99-ns	    231280 p99.9-ns
BenchmarkHost/stream/sandboxes=64/size=64K/impl=host-2         	       1	     30728 ns/op	 585.41 MB/s	      8933 frames/s	        55.32 peak-rss-MiB	        55.32 rss-MiB	  50 pss-MiB	        68.75 spread-%
BenchmarkHost/stream/sandboxes=64/size=64K/impl=serve-2        	       1	     17575 ns/op	 530.27 MB/s	      8091 frames/s	       889.2 peak-rss-MiB	       889.2 rss-MiB	  300 pss-MiB	        56.25 spread-%
BenchmarkHost/isolation/flood=16x128/impl=host-2               	       1	     21802 ns/op	   2508740 flood-frames/s	    142420 flood-p50-ns	   2635369 flood-p99-ns	    121312 idle-p50-ns	    363197 idle-p99-ns	         1.5 p99-ratio
BenchmarkHost/isolation/flood=16x128/impl=serve-2              	       1	     27270 ns/op	   2826846 flood-frames/s	    151839 flood-p50-ns	   1744803 flood-p99-ns	     23289 idle-p50-ns	    222212 idle-p99-ns	         7.852 p99-ratio
BenchmarkHost/churn/sandboxes=1000/impl=host-2                 	       1	17495470006 ns/op	       809.0 cycle2-rss-change-%	        0 fd-change-%	        11.00 fds-end	        11.00 fds-start	      12 rss-change-%	       140.3 rss-end-MiB	      1274 rss-peak-MiB	        10.75 rss-start-MiB	      5018 settle-ms
BenchmarkHost/idle/sandboxes=1000/impl=host-2         	       1	6053311394 ns/op	       60.5 KiB/sandbox	         2.000 cpus	        11.18 empty-rss-MiB	      2014 fds	   3846070 put-p50-ns	 104532618 put-p99-ns	       71.0 rss-MiB	      13 threads
BenchmarkHost/rt/neighbours=999/size=64/impl=host-2   	       1	     11000 ns/op	     130000 p50-ns	    127118 p99-ns	    361110 p99.9-ns
BenchmarkHost/rt/neighbours=999/size=64/impl=serve-2  	       1	     18800 ns/op	     100000 p50-ns	    97058 p99-ns	    231280 p99.9-ns
BenchmarkHost/stream/sandboxes=64/size=64K/impl=host-2         	       1	     30728 ns/op	 400.00 MB/s	      8933 frames/s	        55.32 peak-rss-MiB	        55.32 rss-MiB	  50 pss-MiB	        68.75 spread-%
BenchmarkHost/stream/sandboxes=64/size=64K/impl=serve-2        	       1	     17575 ns/op	 500.00 MB/s	      8091 frames/s	       889.2 peak-rss-MiB	       889.2 rss-MiB	  300 pss-MiB	        56.25 spread-%
BenchmarkHost/isolation/flood=16x128/impl=host-2               	       1	     21802 ns/op	   2508740 flood-frames/s	    142420 flood-p50-ns	   2635369 flood-p99-ns	    121312 idle-p50-ns	    363197 idle-p99-ns	         2.5 p99-ratio
BenchmarkHost/isolation/flood=16x128/impl=serve-2              	       1	     27270 ns/op	   2826846 flood-frames/s	    151839 flood-p50-ns	   1744803 flood-p99-ns	     23289 idle-p50-ns	    222212 idle-p99-ns	         7.852 p99-ratio
BenchmarkHost/churn/sandboxes=1000/impl=host-2                 	       1	17495470006 ns/op	       809.0 cycle2-rss-change-%	        0 fd-change-%	        11.00 fds-end	        11.00 fds-start	      -2 rss-change-%	       140.3 rss-end-MiB	      1274 rss-peak-MiB	        10.75 rss-start-MiB	      5018 settle-ms
BenchmarkRelay/rt/size=64/impl=reactor-2         	    3214	    108156 ns/op	     105056 p50-ns
PASS
`

func hostRows(t *testing.T, tab string) map[string][]string {
	t.Helper()
	rows := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(tab), "\n")[2:] {
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) != 7 {
			t.Fatalf("row %q has %d cells", line, len(cells))
		}
		rows[cells[0]] = cells[1:]
	}
	return rows
}

func TestHostTargets(t *testing.T) {
	all, err := Parse(strings.NewReader(hostSample))
	if err != nil {
		t.Fatal(err)
	}
	rs := Of(all, "Host")
	if len(rs) != 16 || len(Of(all, "Relay")) != 1 {
		t.Fatalf("%d host results and %d relay results, want 16 and 1", len(rs), len(Of(all, "Relay")))
	}
	rows := hostRows(t, HostTargets(rs, nil))
	if len(rows) != len(hostGoals) {
		t.Fatalf("%d rows for %d goals", len(rows), len(hostGoals))
	}
	// figure → lone, host, ratio, target, met, by round
	want := map[string][]string{
		// medians of 40.5 and 60.5: 50.5, over the target.
		"1,000 idle sandboxes: RSS each above the empty daemon": {"—", "50.5 KiB", "—", "≤ 50 KiB", "no", "40.5 KiB, 60.5 KiB"},
		// 12 threads against 2 CPUs + 8.
		"1,000 idle sandboxes: threads":   {"—", "12", "—", "≤ CPUs + 8", "no", "11, 13"},
		"1,000 idle sandboxes: total RSS": {"—", "61 MiB", "—", "", "", "51 MiB, 71 MiB"},
		"10,000 idle sandboxes: RSS each": {"", "not run", "", "must work", "", ""},
		// p50 115 µs against 100 µs: 1.15×.
		"round trip 64 B with 999 idle neighbours, p50": {"100.0 µs", "115.0 µs", "1.15×", "≤ 1.1×", "no", "1.00× 1.30×"},
		"round trip 64 B with 999 idle neighbours, p99": {"97.1 µs", "127.1 µs", "1.31×", "", "", "1.31× 1.31×"},
		// 492.7 against 515.1 MB/s: 0.96×.
		"64 sandboxes streaming 64 KiB frames: aggregate": {"515 MB/s", "493 MB/s", "0.96×", "≥ 0.9×", "yes", "1.10× 0.80×"},
		"64 sandboxes streaming 64 KiB frames: total RSS": {"889 MiB", "55 MiB", "0.06×", "far less (≤ 0.5×)", "yes", "0.06× 0.06×"},
		"64 sandboxes streaming 64 KiB frames: total PSS": {"300 MiB", "50 MiB", "0.17×", "", "", "0.17× 0.17×"},
		// median of 1.5 and 2.5: 2.0, at the target; the lone relays' own ratio beside it.
		"one sandbox flooded (16 clients): another's p99 ÷ its idle p99": {"7.85×", "2.00×", "—", "≤ 2×", "yes", "1.50×, 2.50×"},
		"adding and removing 1,000 sandboxes: descriptors":               {"—", "+0.0 %", "—", "within 5 %", "yes", "+0.0 %, +0.0 %"},
		"adding and removing 1,000 sandboxes: RSS":                       {"—", "+5.0 %", "—", "within 5 %", "yes", "+12.0 %, -2.0 %"},
	}
	for fig, w := range want {
		got, ok := rows[fig]
		if !ok {
			t.Errorf("no row %q", fig)
			continue
		}
		if strings.Join(got, " | ") != strings.Join(w, " | ") {
			t.Errorf("%s:\n got  %q\n want %q", fig, got, w)
		}
	}
}

// A scenario that failed in a round is not met, whatever the other rounds
// gave; one that failed in every round says so instead of "not run".
func TestHostTargetsFailed(t *testing.T) {
	out := hostSample + `--- FAIL: BenchmarkHost/idle/sandboxes=10000/impl=host
    host_test.go:60: RLIMIT_NOFILE is 20000
--- FAIL: BenchmarkHost/stream/sandboxes=64/size=64K
    host_test.go:70: streams: read: no data for 10s
`
	failed, err := Failures(strings.NewReader(out), "Host")
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 2 || failed["idle/sandboxes=10000"] != 1 || failed["stream/sandboxes=64/size=64K"] != 1 {
		t.Fatalf("failures: %v", failed)
	}
	all, err := Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	rows := hostRows(t, HostTargets(Of(all, "Host"), failed))
	if got := rows["10,000 idle sandboxes: RSS each"]; got[1] != "failed" || got[4] != "no" || got[5] != "failed in 1 round(s)" {
		t.Errorf("10,000: %q", got)
	}
	if got := rows["64 sandboxes streaming 64 KiB frames: aggregate"]; got[4] != "no" || !strings.HasSuffix(got[5], "; failed in 1 round(s)") {
		t.Errorf("stream: %q", got)
	}
	if got := rows["round trip 64 B with 999 idle neighbours, p99"]; got[4] != "" {
		t.Errorf("a figure without a target got a verdict: %q", got)
	}
}

// run writes targets-host.md for a file of host results alone, and still
// refuses a file with neither suite.
func TestRunHostOnly(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "bench-host.txt")
	host := strings.ReplaceAll(hostSample, "BenchmarkRelay/", "BenchmarkOther/")
	if err := os.WriteFile(in, []byte(host), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(in, dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "targets-host.md"))
	if err != nil || !strings.Contains(string(b), "| 1,000 idle sandboxes: threads |") {
		t.Fatalf("targets-host.md: %v\n%s", err, b)
	}
	if _, err := os.Stat(filepath.Join(dir, "targets.md")); err == nil {
		t.Fatal("targets.md written without relay results")
	}
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, []byte("PASS\n"), 0o644)
	if err := run(empty, dir); err == nil {
		t.Fatal("no error for a file without results")
	}
}
