package bench

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// smokeFrames is how many frames a smoke run sends: enough for every
// window to fill and drain a few times, few enough to take milliseconds.
func smokeFrames(w Workload) int {
	switch {
	case w.Kind == RoundTrip:
		return 50
	case w.Size >= mib:
		return 5
	case w.Size >= 64*kib:
		return 40
	}
	return 5000
}

func smoke(t *testing.T, w Workload, target *Target) {
	t.Helper()
	n := smokeFrames(w)
	var started, stopped int
	res, err := w.Run(target.Socket, n, Hooks{Start: func() { started++ }, Stop: func() { stopped++ }})
	if err != nil {
		t.Fatalf("%s: %v\n%s", w.Name, err, target.LogTail())
	}
	if started != 1 || stopped != 1 {
		t.Fatalf("hooks: Start called %d times, Stop %d, want once each", started, stopped)
	}
	if res.Frames != n || res.Elapsed <= 0 {
		t.Fatalf("result: %d frames in %v, want %d", res.Frames, res.Elapsed, n)
	}
	switch {
	case w.Kind == RoundTrip:
		if len(res.Latency) != n || !slices.IsSorted(res.Latency) || res.Latency[0] <= 0 {
			t.Fatalf("latencies: %d, sorted %v, first %v", len(res.Latency), slices.IsSorted(res.Latency), res.Latency[0])
		}
	case w.Clients > 1:
		if len(res.PerClient) != w.Clients {
			t.Fatalf("per-client counts: %d, want %d", len(res.PerClient), w.Clients)
		}
		// The first client to finish had all of its share.
		if slices.Max(res.PerClient) != uint64(n/w.Clients) && slices.Max(res.PerClient) != uint64(n/w.Clients+1) {
			t.Fatalf("per-client counts %v: none is a whole share of %d", res.PerClient, n)
		}
	}
}

// Every workload the floor runs completes against it: the harness itself
// works without any relay.
func TestWorkloadsFloor(t *testing.T) {
	for _, w := range Workloads {
		if !slices.Contains(w.Targets, Floor) {
			continue
		}
		t.Run(w.Name, func(t *testing.T) {
			smoke(t, w, targets.get(t, Floor, w, ""))
		})
	}
}

// Every workload of the socket-guest path that a forwarder runs completes
// against it: the byte forwarder for one client, the frame-aware one for
// fan-in, each in front of its own external echo guest.
func TestWorkloadsForwarders(t *testing.T) {
	ran := 0
	for _, w := range Workloads {
		for _, impl := range w.Targets {
			if impl != Forwarder && impl != FrameForwarder {
				continue
			}
			ran++
			t.Run(w.Name+"/impl="+impl, func(t *testing.T) {
				smoke(t, w, targets.get(t, impl, w, ""))
			})
		}
	}
	if ran < 6 {
		t.Fatalf("%d forwarder workloads, want rt, 4 streams and fan-in", ran)
	}
}

// Every workload completes against both relays, built from this tree, on
// both paths (in-process echo guest and external echo guest process), and
// the exec.log workloads leave their stdout in exec.log.
func TestWorkloadsRelays(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/relay")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build cmd/relay with")
	}
	bin := t.TempDir()
	for _, name := range []string{"relay", "relay-baseline"} {
		if out, err := exec.Command(gobin, "build", "-o", filepath.Join(bin, name), "github.com/agentrelay/agentrelay/cmd/"+name).CombinedOutput(); err != nil {
			t.Fatalf("go build cmd/%s: %v\n%s", name, err, out)
		}
	}
	for _, w := range Workloads {
		for _, impl := range w.Targets {
			if impl != Reactor && impl != Goroutine {
				continue
			}
			t.Run(w.Name+"/impl="+impl, func(t *testing.T) {
				target := targets.get(t, impl, w, bin)
				smoke(t, w, target)
				if w.ExecLog {
					waitExecLog(t, filepath.Join(target.Dir, target.Name(), "exec.log"))
				}
			})
		}
	}
	// The next test or benchmark must not inherit relays built here.
	targets.stopAll()
}

// waitExecLog waits for the relay's asynchronous exec.log writer to have
// written stdout lines.
func waitExecLog(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte(`"s":"stdout"`)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no stdout line after 5 s (%d bytes)", path, len(b))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Every workload is one leaf of the name tree: no two share a name, and
// none is lost.
func TestWorkloadTree(t *testing.T) {
	var leaves []string
	var walk func(prefix string, n *node)
	walk = func(prefix string, n *node) {
		if n.w != nil {
			if n.w.Name != prefix {
				t.Errorf("leaf %q holds workload %q", prefix, n.w.Name)
			}
			leaves = append(leaves, prefix)
		}
		for _, c := range n.children {
			p := c.name
			if prefix != "" {
				p = prefix + "/" + c.name
			}
			walk(p, c)
		}
	}
	walk("", workloadTree(Workloads))
	if len(leaves) != len(Workloads) {
		t.Fatalf("%d leaves for %d workloads: %v", len(leaves), len(Workloads), leaves)
	}
}
