package bench

import (
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentrelay/agentrelay/relay"
)

// fakeHostEnv turns the test binary into a stand-in for `relay host`: the
// same command line and control API, each sandbox either a `relay serve`
// child (the value is the bin/relay to run) or, with the value
// fakeLoopMode, a relay of relay.Loop in the process (the API the daemon is
// built on, whichever cut of it this tree has). It lets the harness be
// tested end to end before the real daemon exists; BenchmarkHost runs
// against it with fakeDaemonEnv set. Its figures are not the daemon's.
const fakeHostEnv = "AGENTRELAY_BENCH_FAKEHOST"

const fakeLoopMode = "loop"

type fakeHost struct {
	relay string // for relay serve children, or fakeLoopMode
	loops []*relay.Loop
	max   int
	mu    sync.Mutex
	sbs   map[string]*fakeSandbox
}

type fakeSandbox struct {
	spec SandboxSpec
	cmd  *exec.Cmd    // serve mode
	r    *relay.Relay // loop mode
	done <-chan struct{}
}

func runFakeHost(relayBin string, args []string) error {
	if len(args) == 0 || args[0] != "host" {
		return fmt.Errorf("fake host: want `host` and flags, got %q", args)
	}
	fs := flag.NewFlagSet("host", flag.ContinueOnError)
	control := fs.String("control", "", "")
	fs.String("state", "", "")
	loops := fs.Int("loops", runtime.NumCPU(), "")
	max := fs.Int("max-sandboxes", 1000, "")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	h := &fakeHost{relay: relayBin, max: *max, sbs: map[string]*fakeSandbox{}}
	if relayBin == fakeLoopMode {
		RaiseFileLimit()
		quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		for i := range *loops {
			l, err := relay.NewLoop(relay.LoopOptions{Index: i, Logger: quiet})
			if err != nil {
				return err
			}
			go l.Run()
			h.loops = append(h.loops, l)
		}
	}
	os.Remove(*control)
	ln, err := net.Listen("unix", *control)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /sandboxes/{name}", h.put)
	mux.HandleFunc("DELETE /sandboxes/{name}", h.delete)
	mux.HandleFunc("GET /sandboxes", h.list)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		h.mu.Lock()
		for _, sb := range h.sbs {
			sb.stop()
		}
		os.Exit(0)
	}()
	return http.Serve(ln, mux)
}

func fakeError(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"message": fmt.Sprintf(format, args...)})
}

func (h *fakeHost) put(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var spec SandboxSpec
	if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
		fakeError(w, http.StatusBadRequest, "body: %v", err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sbs[name] != nil {
		fakeError(w, http.StatusConflict, "sandbox %q exists", name)
		return
	}
	if len(h.sbs) >= h.max {
		fakeError(w, http.StatusTooManyRequests, "%d sandboxes already", len(h.sbs))
		return
	}
	if h.loops != nil {
		h.putLoop(w, name, spec)
		return
	}
	done := make(chan struct{})
	sb := &fakeSandbox{spec: spec, done: done}
	sb.cmd = exec.Command(h.relay, "serve", "--socket", spec.Socket, "--guest", spec.Guest, "--ready-timeout", "30s")
	logPath := spec.Socket + ".log"
	logf, err := os.Create(logPath)
	if err != nil {
		fakeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	sb.cmd.Stdout, sb.cmd.Stderr = logf, logf
	sb.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = sb.cmd.Start()
	logf.Close()
	if err != nil {
		fakeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	go func() { sb.cmd.Wait(); close(done) }()
	// 201 once the client socket exists, as the real daemon answers once
	// it listens.
	deadline := time.After(10 * time.Second)
	for {
		if fi, err := os.Stat(spec.Socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			break
		}
		select {
		case <-sb.done:
			fakeError(w, http.StatusBadRequest, "relay serve exited: %s", logTail(logPath))
			return
		case <-deadline:
			sb.stop()
			fakeError(w, http.StatusGatewayTimeout, "relay serve not listening after 10 s: %s", logTail(logPath))
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
	h.sbs[name] = sb
	w.WriteHeader(http.StatusCreated)
}

// putLoop adds a sandbox to the least-loaded loop; h.mu is held.
func (h *fakeHost) putLoop(w http.ResponseWriter, name string, spec SandboxSpec) {
	path, ok := strings.CutPrefix(spec.Guest, "unix:")
	if !ok {
		fakeError(w, http.StatusBadRequest, "guest %q: want unix:PATH", spec.Guest)
		return
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		fakeError(w, http.StatusBadGateway, "guest: %v", err)
		return
	}
	f, err := c.(*net.UnixConn).File()
	c.Close()
	if err != nil {
		fakeError(w, http.StatusInternalServerError, "guest: %v", err)
		return
	}
	l := h.loops[0]
	for _, o := range h.loops[1:] {
		if o.Relays() < l.Relays() {
			l = o
		}
	}
	r, err := l.Add(relay.Options{Socket: spec.Socket, Guest: f, ReadyTimeout: 30 * time.Second})
	if err != nil {
		f.Close()
		fakeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	h.sbs[name] = &fakeSandbox{spec: spec, r: r, done: r.Done()}
	w.WriteHeader(http.StatusCreated)
}

func (sb *fakeSandbox) stop() {
	if sb.r != nil {
		sb.r.Close()
		<-sb.done
		return
	}
	sb.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-sb.done:
	case <-time.After(5 * time.Second):
		// relay serve can miss a SIGTERM that arrives as its guest becomes
		// ready; the stand-in must not hang on that.
		fmt.Fprintf(os.Stderr, "fake host: relay serve for %s ignored SIGTERM for 5 s; killed\n", sb.spec.Socket)
		sb.cmd.Process.Kill()
		<-sb.done
	}
}

func (h *fakeHost) delete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	h.mu.Lock()
	sb := h.sbs[name]
	delete(h.sbs, name)
	h.mu.Unlock()
	if sb == nil {
		fakeError(w, http.StatusNotFound, "no sandbox %q", name)
		return
	}
	sb.stop()
	w.WriteHeader(http.StatusNoContent)
}

func (h *fakeHost) list(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	out := []map[string]any{}
	for name, sb := range h.sbs {
		state := "serving"
		if sb.r != nil {
			state = sb.r.State().String()
		} else {
			select {
			case <-sb.done:
				state = "guest_gone"
			default:
			}
		}
		out = append(out, map[string]any{"name": name, "state": state, "loop": 0, "clients": 0, "counters": map[string]int{}})
	}
	h.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i]["name"].(string) < out[j]["name"].(string) })
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}
