package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SandboxSpec is the body of PUT /sandboxes/{name} on a host daemon's
// control socket.
type SandboxSpec struct {
	Guest     string `json:"guest"`  // "unix:PATH"
	Socket    string `json:"socket"` // where its clients connect
	Handshake string `json:"handshake,omitempty"`
}

// Sandbox is one element of GET /sandboxes. Only what the harness reads is
// typed; the rest is kept as the daemon sent it.
type Sandbox struct {
	Name     string          `json:"name"`
	State    string          `json:"state"`
	Loop     json.RawMessage `json:"loop"`
	Clients  json.RawMessage `json:"clients"`
	Counters json.RawMessage `json:"counters"`
}

// Control is a client of a host daemon's HTTP/JSON control API on a Unix
// socket. It uses only net/http, so that the harness measures the daemon
// through its API and links none of its code.
type Control struct {
	path string
	hc   *http.Client
}

// controlTimeout bounds each request, so that a daemon that stops
// answering (out of descriptors, deadlocked) fails the run instead of
// hanging it.
const controlTimeout = 30 * time.Second

// NewControl returns a client of the control socket at path.
func NewControl(path string) *Control {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConnsPerHost: 16,
	}
	return &Control{path: path, hc: &http.Client{Transport: tr, Timeout: controlTimeout}}
}

// Close drops the idle connections to the daemon.
func (c *Control) Close() { c.hc.CloseIdleConnections() }

// APIError is an answer other than the one a request expects.
type APIError struct {
	Method, Path string
	Status       int
	Message      string // the body's "message", or the body itself
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), e.Message)
}

func (c *Control) do(method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://relay"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != want {
		e := &APIError{Method: method, Path: path, Status: resp.StatusCode, Message: strings.TrimSpace(string(b))}
		var m struct{ Message string }
		if json.Unmarshal(b, &m) == nil && m.Message != "" {
			e.Message = m.Message
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// Put creates sandbox name; it returns once the daemon has answered 201,
// that is once the sandbox's client socket listens.
func (c *Control) Put(name string, spec SandboxSpec) error {
	return c.do(http.MethodPut, "/sandboxes/"+url.PathEscape(name), spec, http.StatusCreated, nil)
}

// Delete removes sandbox name (204).
func (c *Control) Delete(name string) error {
	return c.do(http.MethodDelete, "/sandboxes/"+url.PathEscape(name), nil, http.StatusNoContent, nil)
}

// List returns every sandbox.
func (c *Control) List() ([]Sandbox, error) {
	var sbs []Sandbox
	err := c.do(http.MethodGet, "/sandboxes", nil, http.StatusOK, &sbs)
	return sbs, err
}

// HostEnv, when set, is extra arguments for every `relay host` the
// benchmarks start (split at spaces), e.g. "--loops 4".
const HostEnv = "RELAY_HOST_ARGS"

// HostConfig says how to start a host daemon.
type HostConfig struct {
	Relay        string   // bin/relay; it is run as `relay host ...`
	Dir          string   // where the control socket, the state file and the log go
	Loops        int      // --loops, or 0 for the daemon's default (one per CPU)
	MaxSandboxes int      // --max-sandboxes, or 0 for the daemon's default
	Env          []string // added to the daemon's environment
}

// Host is a running host daemon.
type Host struct {
	Control *Control
	Socket  string // the control socket
	LogPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// StartHost starts `relay host` and returns once its control API answers.
func StartHost(cfg HostConfig) (*Host, error) {
	h := &Host{
		Socket:  filepath.Join(cfg.Dir, "control.sock"),
		LogPath: filepath.Join(cfg.Dir, "host.log"),
	}
	args := []string{"host", "--control", h.Socket, "--state", filepath.Join(cfg.Dir, "state.json")}
	if cfg.Loops > 0 {
		args = append(args, "--loops", strconv.Itoa(cfg.Loops))
	}
	if cfg.MaxSandboxes > 0 {
		args = append(args, "--max-sandboxes", strconv.Itoa(cfg.MaxSandboxes))
	}
	args = append(args, strings.Fields(os.Getenv(HostEnv))...)
	h.cmd = exec.Command(cfg.Relay, args...)
	h.cmd.Env = append(os.Environ(), cfg.Env...)
	done, err := startLogged(h.cmd, h.LogPath)
	if err != nil {
		return nil, fmt.Errorf("bench: start %s host: %w", cfg.Relay, err)
	}
	h.exited = done
	h.Control = NewControl(h.Socket)
	deadline := time.Now().Add(startTimeout)
	for {
		_, err := h.Control.List()
		if err == nil {
			return h, nil
		}
		if !h.Alive() {
			return nil, fmt.Errorf("bench: %s host exited before serving its control API: %s", cfg.Relay, logTail(h.LogPath))
		}
		if time.Now().After(deadline) {
			h.Stop()
			return nil, fmt.Errorf("bench: the host daemon's control API does not answer after %v: %w: %s", startTimeout, err, logTail(h.LogPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pid is the daemon's process id.
func (h *Host) Pid() int { return h.cmd.Process.Pid }

// Alive reports whether the daemon still runs.
func (h *Host) Alive() bool {
	select {
	case <-h.exited:
		return false
	default:
		return true
	}
}

// Stop ends the daemon (SIGTERM, then SIGKILL after 5 s).
func (h *Host) Stop() error {
	h.Control.Close()
	return stop(h.cmd, h.exited, "the host daemon")
}

// Explain turns a failed request into an error that says what state the
// daemon was in: dead (with its log), or alive with so many descriptors
// against its limit, which is what an EMFILE from it comes down to.
func (h *Host) Explain(err error) error {
	if !h.Alive() {
		return fmt.Errorf("%w; the host daemon exited: %s", err, logTail(h.LogPath))
	}
	fds, ferr := CountFDs(h.Pid())
	if ferr != nil {
		return fmt.Errorf("%w (host daemon: %v)", err, ferr)
	}
	return fmt.Errorf("%w (host daemon: %d descriptors open, RLIMIT_NOFILE %s)", err, fds, FileLimit(h.Pid()))
}

// Serve is a lone `relay serve` process, the host daemon's comparison.
type Serve struct {
	Socket  string
	LogPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// StartServes starts one `relay serve --guest unix:GUEST` per guest, all at
// once, with their sockets and logs in dir (named after prefix), and
// returns once each has completed a client handshake.
func StartServes(relay, dir, prefix string, guests []string) ([]*Serve, error) {
	ss := make([]*Serve, 0, len(guests))
	fail := func(err error) ([]*Serve, error) {
		StopServes(ss)
		return nil, err
	}
	for i, g := range guests {
		s := &Serve{
			Socket:  filepath.Join(dir, fmt.Sprintf("%s%d.sock", prefix, i)),
			LogPath: filepath.Join(dir, fmt.Sprintf("%s%d.log", prefix, i)),
		}
		s.cmd = exec.Command(relay, "serve", "--socket", s.Socket, "--guest", "unix:"+g, "--ready-timeout", "30s")
		done, err := startLogged(s.cmd, s.LogPath)
		if err != nil {
			return fail(fmt.Errorf("bench: start relay serve %d: %w", i, fdError("start", err)))
		}
		s.exited = done
		ss = append(ss, s)
	}
	for _, s := range ss {
		if err := waitServing(s.Socket, s.alive, s.LogPath); err != nil {
			return fail(err)
		}
	}
	return ss, nil
}

func (s *Serve) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Pid is the relay's process id.
func (s *Serve) Pid() int { return s.cmd.Process.Pid }

// StopServes ends every relay of ss.
func StopServes(ss []*Serve) error {
	var errs []error
	// Signalled all at once, not one after the other's exit.
	for _, s := range ss {
		s.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, s := range ss {
		if err := stop(s.cmd, s.exited, "relay serve "+s.Socket); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

func servePids(ss []*Serve) []int {
	pids := make([]int, len(ss))
	for i, s := range ss {
		pids[i] = s.Pid()
	}
	return pids
}

// waitServing waits until a client can complete a handshake on socket,
// for at most startTimeout, or until alive says the server is gone.
func waitServing(socket string, alive func() bool, logPath string) error {
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := Dial(socket)
		if err == nil {
			return c.Close()
		}
		if !alive() {
			return fmt.Errorf("bench: the server of %s exited: %s", socket, logTail(logPath))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: no handshake on %s after %v: %w: %s", socket, startTimeout, err, logTail(logPath))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
