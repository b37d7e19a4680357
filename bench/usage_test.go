package bench

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and a parenthesis, as /proc allows.
	stat := "4242 (re lay) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 37 0 0 20 0 9 0 100 1000 100 " +
		"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 287 * 10 * time.Millisecond; got != want {
		t.Fatalf("cpu = %v, want %v (utime 250 + stime 37 ticks)", got, want)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 u s"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestProcCPUOwnProcess(t *testing.T) {
	before, err := ProcCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel has charged 50 ms of CPU, not for a wall-clock
	// time: on a loaded 2-core machine 100 ms of wall time may be 40 ms of
	// CPU. A ProcCPU that does not move fails after 5 s.
	var after time.Duration
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		for spin := time.Now().Add(10 * time.Millisecond); time.Now().Before(spin); {
		}
		if after, err = ProcCPU(os.Getpid()); err != nil {
			t.Fatal(err)
		}
		if after-before >= 50*time.Millisecond {
			return
		}
	}
	t.Fatalf("5 s of spinning read as %v of CPU", after-before)
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 1000; i++ {
		lat = append(lat, time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 500}, {99, 990}, {99.9, 999}, {100, 1000}, {0.01, 1}} {
		if got := Percentile(lat, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v", got)
	}
}

func TestSpread(t *testing.T) {
	r := Result{PerClient: []uint64{100, 80, 90}}
	if got := r.Spread(); got != 20 {
		t.Fatalf("spread = %v, want 20", got)
	}
	if got := (Result{PerClient: []uint64{5, 5}}).Spread(); got != 0 {
		t.Fatalf("even spread = %v", got)
	}
}

func TestUsageSub(t *testing.T) {
	a := Usage{CPU: 5, Mallocs: 10, HasMallocs: true, Syscalls: 7, Switches: 3, HasKernel: true}
	b := Usage{CPU: 2, Mallocs: 4, HasMallocs: true, Syscalls: 1, Switches: 1}
	d := a.Sub(b)
	if d.CPU != 3 || d.Mallocs != 6 || !d.HasMallocs || d.HasKernel {
		t.Fatalf("Sub = %+v", d)
	}
	if d := (Usage{Mallocs: 3}).Sub(Usage{Mallocs: 5}); d.Mallocs != 0 {
		t.Fatalf("Mallocs below the calibrated request cost: %d, want 0", d.Mallocs)
	}
}
