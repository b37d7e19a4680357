package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
)

// TestInitReaper runs the agent with an InitReaper in a child process that
// is a child subreaper, so that it inherits orphans as PID 1 does (a test
// binary's own children would otherwise race it). Every command leaves an
// orphan behind; every exit code must arrive intact, and no zombie may be
// left.
func TestInitReaper(t *testing.T) {
	if os.Getenv("AGENT_TEST_INITREAPER") == "1" {
		initReaperChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestInitReaper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "AGENT_TEST_INITREAPER=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func initReaperChild(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	h := startAgent(t, 0, Options{Reaper: NewInitReaper()})
	const batch, rounds = 8, 12
	id := uint32(0)
	for round := 0; round < rounds; round++ {
		want := map[uint32]int32{}
		for i := 0; i < batch; i++ {
			id++
			code := int32(id % 7)
			want[id] = code
			// The background sleep outlives the shell: an orphan the
			// reaper must reap without mistaking it for a session.
			sendExec(h, id, frame.ExecRequest{Cmd: "sh", Args: []string{"-c", fmt.Sprintf("sleep 0.0%d >/dev/null & exit %d", i, code)}})
		}
		deadline := time.Now().Add(20 * time.Second)
		for len(want) > 0 {
			m := h.next(time.Until(deadline))
			switch m.Type {
			case frame.TypeExecExited:
				var p frame.ExecExited
				mustInto(t, m, &p)
				if p.Code != want[m.ID] {
					t.Fatalf("session %d: exit code %d, want %d", m.ID, p.Code, want[m.ID])
				}
				delete(want, m.ID)
			case frame.TypeExecFailed:
				t.Fatalf("session %d failed: %+v", m.ID, m)
			}
		}
	}
	// The orphans end within 90 ms; then nothing is left unreaped.
	deadline := time.Now().Add(5 * time.Second)
	for {
		z := zombies(t)
		if len(z) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("zombie children left: %v", z)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// zombies lists this process's zombie children.
func zombies(t *testing.T) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	self := os.Getpid()
	var z []int
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at
		// the last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if ppid == self && f[0] == "Z" {
			pid, _ := strconv.Atoi(strings.Fields(s)[0])
			z = append(z, pid)
		}
	}
	return z
}
