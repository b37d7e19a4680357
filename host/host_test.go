package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var bg = context.Background()

// TestAPI: two sandboxes on two loops, each serving a round trip through
// its own socket; GET lists them; DELETE closes the client, removes the
// socket, frees the descriptors and the state file's entry.
func TestAPI(t *testing.T) {
	dir := shortDir(t)
	h, c := startHost(t, dir, Options{})
	ga, gb := newGuest(t, dir, "a.console", echoGuest), newGuest(t, dir, "b.console", echoGuest)
	before := fdNames()

	a, err := c.Add(bg, "a", Spec{Guest: ga.spec(), Socket: filepath.Join(dir, "a.sock"), ExecLog: filepath.Join(dir, "a.log")})
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "a" || a.Socket != filepath.Join(dir, "a.sock") || a.Handshake != "auto" || a.ReadyTimeout != "1m0s" || a.Loop < 0 {
		t.Fatalf("201 body: %+v", a)
	}
	if _, err := os.Stat(a.Socket); err != nil {
		t.Fatalf("the socket does not exist when PUT answers: %v", err)
	}
	b, err := c.Add(bg, "b", Spec{Guest: ga.spec()[:0] + gb.spec(), Socket: filepath.Join(dir, "b.sock"), Handshake: "0.5", ReadyTimeout: "5"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Loop == a.Loop {
		t.Fatalf("both sandboxes on loop %d of 2: not the least-loaded", a.Loop)
	}
	roundTrip(t, a.Socket)
	roundTrip(t, b.Socket)

	// A loop publishes its frame counters at the end of its pass, which
	// may come after the echo reached the client.
	var list []Info
	eventually(t, "the round trips to be counted", func() bool {
		list, err = c.List(bg)
		return err == nil && len(list) == 2 && list[0].Counters["frames_to_client"] == 1 && list[1].Counters["frames_to_client"] == 1
	})
	if list[0].Name != "a" || list[1].Name != "b" {
		t.Fatalf("GET /sandboxes: %+v", list)
	}
	for _, in := range list {
		// The 0.5 form also tells the guest of the departed client.
		if in.State != StateServing || in.Counters["frames_to_guest"] < 1 || in.Counters["frames_to_client"] != 1 || in.Error != "" {
			t.Fatalf("after one round trip: %+v", in)
		}
	}
	if list[1].Handshake != "0.5" || list[1].Counters["slots"] != 128 || list[1].ReadyTimeout != "5s" {
		t.Fatalf("b asked for the 0.5 form: %+v", list[1])
	}
	if _, ok := list[0].Counters["exec_log_lines"]; !ok {
		t.Fatalf("a has exec.log but no exec_log_ counters: %v", list[0].Counters)
	}
	saved, err := readState(filepath.Join(dir, "state.json"))
	if err != nil || len(saved) != 2 || saved[0].Name != "a" || saved[0].ExecLog != a.ExecLog || saved[1].Handshake != "0.5" {
		t.Fatalf("state file: %v %+v", err, saved)
	}
	if fi, err := os.Stat(filepath.Join(dir, "state.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode: %v %v", fi.Mode(), err)
	}

	// A client stays connected through the DELETE: it is closed by it.
	done := make(chan error, 1)
	go func() { done <- tryRoundTrip(a.Socket, 0) }()
	if err := c.Remove(bg, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a.Socket); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket after DELETE: %v", err)
	}
	if lines, err := os.ReadFile(filepath.Join(dir, "a.log", "exec.log")); err != nil || !strings.Contains(string(lines), "sandbox started") {
		t.Fatalf("exec.log not flushed by DELETE: %v %q", err, lines)
	}
	if _, err := c.Get(bg, "a"); Status(asKind(err)) != http.StatusNotFound {
		t.Fatalf("GET after DELETE: %v", err)
	}
	if err := c.Remove(bg, "a"); Status(asKind(err)) != http.StatusNotFound {
		t.Fatalf("second DELETE: %v", err)
	}
	if err := c.Remove(bg, "b"); err != nil {
		t.Fatal(err)
	}
	c.hc.Transport.(*http.Transport).CloseIdleConnections()
	fdsBack(t, before)
	if saved, _ := readState(filepath.Join(dir, "state.json")); len(saved) != 0 {
		t.Fatalf("state file keeps %+v after DELETE", saved)
	}
	if st := h.Stats(); st.Sandboxes[StateServing] != 0 || st.Loops[0].Sandboxes+st.Loops[1].Sandboxes != 0 {
		t.Fatalf("host stats after DELETE: %+v", st)
	}
}

// asKind turns a client's *APIError back into the kind its status names,
// so tests can compare statuses.
func asKind(err error) error {
	var e *APIError
	if !errors.As(err, &e) {
		return err
	}
	for _, k := range []error{ErrInvalid, ErrLimit, ErrNotFound, ErrConflict, ErrGuest, ErrUnavailable} {
		if Status(k) == e.Status {
			return withKind(k, err)
		}
	}
	if e.Status == http.StatusMethodNotAllowed {
		return err
	}
	return err
}

// TestReject: every bad request is a 4xx (or the 502 of a guest that cannot
// be reached) with a message, and leaves no socket, entry, state or
// descriptor behind.
func TestReject(t *testing.T) {
	dir := shortDir(t)
	h, c := startHost(t, dir, Options{MaxSandboxes: 2})
	g := newGuest(t, dir, "g.console", echoGuest)
	if _, err := c.Add(bg, "taken", Spec{Guest: g.spec(), Socket: filepath.Join(dir, "taken.sock")}); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, "live.sock")
	liveGuest := newGuest(t, dir, "live.sock", silentGuest) // a server on the socket path asked for
	_ = liveGuest
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(shared, 0o777)
	sock := filepath.Join(dir, "new.sock")
	ok := `"guest": "` + g.spec() + `", "socket": "` + sock + `"`
	long := "/" + strings.Repeat("x", 120) + ".sock"

	cases := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"malformed", "PUT", "/sandboxes/n", `{"guest": `, 400, "malformed body"},
		{"unknown field", "PUT", "/sandboxes/n", `{` + ok + `, "sokcet": "x"}`, 400, `unknown field "sokcet"`},
		{"two values", "PUT", "/sandboxes/n", `{` + ok + `} {}`, 400, "more than one JSON value"},
		{"empty body", "PUT", "/sandboxes/n", ``, 400, "empty body"},
		{"no guest", "PUT", "/sandboxes/n", `{"socket": "` + sock + `"}`, 400, "guest is required"},
		{"echo guest", "PUT", "/sandboxes/n", `{"guest": "echo", "socket": "` + sock + `"}`, 400, "unix:PATH and vsock:PATH:PORT guests only"},
		{"builtin guest", "PUT", "/sandboxes/n", `{"guest": "builtin", "socket": "` + sock + `"}`, 400, "unix:PATH and vsock:PATH:PORT guests only"},
		{"unknown guest", "PUT", "/sandboxes/n", `{"guest": "tcp:1.2.3.4:5", "socket": "` + sock + `"}`, 400, `unknown kind "tcp"`},
		{"relative guest", "PUT", "/sandboxes/n", `{"guest": "unix:g.console", "socket": "` + sock + `"}`, 400, "must be absolute"},
		{"relative socket", "PUT", "/sandboxes/n", `{"guest": "` + g.spec() + `", "socket": "n.sock"}`, 400, "must be absolute"},
		{"long socket", "PUT", "/sandboxes/n", `{"guest": "` + g.spec() + `", "socket": "` + long + `"}`, 400, "over the 107-byte limit"},
		{"unsafe dir", "PUT", "/sandboxes/n", `{"guest": "` + g.spec() + `", "socket": "` + filepath.Join(shared, "n.sock") + `"}`, 400, "writable by group or others"},
		{"socket in use", "PUT", "/sandboxes/n", `{"guest": "` + g.spec() + `", "socket": "` + live + `"}`, 409, "in use by a running relay"},
		{"another sandbox's socket", "PUT", "/sandboxes/n", `{"guest": "` + g.spec() + `", "socket": "` + filepath.Join(dir, "taken.sock") + `"}`, 409, "sandbox taken's"},
		{"control socket", "PUT", "/sandboxes/n", `{"guest": "` + g.spec() + `", "socket": "` + filepath.Join(dir, "control.sock") + `"}`, 400, "control socket"},
		{"bad handshake", "PUT", "/sandboxes/n", `{` + ok + `, "handshake": "0.6"}`, 400, "want auto, 0.4 or 0.5"},
		{"bad ready_timeout", "PUT", "/sandboxes/n", `{` + ok + `, "ready_timeout": "soon"}`, 400, "ready_timeout"},
		{"huge ready_timeout", "PUT", "/sandboxes/n", `{` + ok + `, "ready_timeout": "48h"}`, 400, "at most 1h0m0s"},
		{"duplicate", "PUT", "/sandboxes/taken", `{` + ok + `}`, 409, "sandbox taken exists"},
		{"bad name", "PUT", "/sandboxes/a%20b", `{` + ok + `}`, 400, "letters, digits"},
		{"long name", "PUT", "/sandboxes/" + strings.Repeat("n", 65), `{` + ok + `}`, 400, "over the limit of 64"},
		{"dot name", "PUT", "/sandboxes/..x", `{` + ok + `}`, 0, ""}, // a fine name: checked below
		{"unreachable guest", "PUT", "/sandboxes/n", `{"guest": "unix:` + filepath.Join(dir, "none") + `", "socket": "` + sock + `", "ready_timeout": "0.3"}`, 502, "guest unix:"},
		{"exec_log not a dir", "PUT", "/sandboxes/n", `{` + ok + `, "exec_log": "` + filepath.Join(dir, "g.console") + `"}`, 400, "exec_log"},
		{"wrong method", "POST", "/sandboxes/n", `{}`, 405, "method POST not allowed"},
		{"wrong method on the list", "DELETE", "/sandboxes", ``, 405, "method DELETE not allowed"},
		{"unknown sandbox", "GET", "/sandboxes/nope", ``, 404, "no sandbox nope"},
		{"unknown sandbox delete", "DELETE", "/sandboxes/nope", ``, 404, "no sandbox nope"},
		{"unknown path", "GET", "/containers", ``, 404, "no such endpoint"},
	}
	idle := c.hc.Transport.(*http.Transport).CloseIdleConnections
	idle()
	before := fdNames()
	hc := &http.Client{Transport: c.hc.Transport}
	for _, tc := range cases {
		if tc.status == 0 {
			continue
		}
		req, _ := http.NewRequest(tc.method, "http://x"+tc.path, strings.NewReader(tc.body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var e APIError
		err = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tc.status || err != nil || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%s: %d %q (%v), want %d with %q", tc.name, resp.StatusCode, e.Message, err, tc.status, tc.msg)
		}
		if resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: Content-Type %q", tc.name, resp.Header.Get("Content-Type"))
		}
		if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s left %s behind", tc.name, sock)
		}
	}
	if list := h.List(); len(list) != 1 {
		t.Fatalf("entries after the rejected requests: %+v", list)
	}
	if saved, _ := readState(filepath.Join(dir, "state.json")); len(saved) != 1 {
		t.Fatalf("state after the rejected requests: %+v", saved)
	}
	if _, err := os.Stat(filepath.Join(dir, "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("the unreachable guest's path was created")
	}
	idle()
	fdsBack(t, before)

	// The limit: 2 sandboxes; the third is refused, even with a fine spec.
	if _, err := c.Add(bg, "..x", Spec{Guest: g.spec(), Socket: sock}); err != nil {
		t.Fatalf("a second sandbox within --max-sandboxes 2: %v", err)
	}
	_, err := c.Add(bg, "third", Spec{Guest: g.spec(), Socket: filepath.Join(dir, "third.sock")})
	var e *APIError
	if !errors.As(err, &e) || e.Status != http.StatusForbidden || !strings.Contains(e.Message, "--max-sandboxes") {
		t.Fatalf("third sandbox over --max-sandboxes 2: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "third.sock")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("the refused sandbox's socket exists")
	}
}

// TestStateGroupCommit: concurrent changes each return once the state file
// holds them, and end with the file holding exactly the registry.
func TestStateGroupCommit(t *testing.T) {
	dir := shortDir(t)
	h, _ := startHost(t, dir, Options{Loops: 1})
	g := newGuest(t, dir, "g.console", echoGuest)
	const n = 24
	errs := make(chan error, n)
	for i := range n {
		go func() {
			name := "s" + strconv.Itoa(i)
			_, err := h.Add(bg, name, Spec{Guest: g.spec(), Socket: filepath.Join(dir, name+".sock")})
			if err == nil {
				saved, rerr := readState(filepath.Join(dir, "state.json"))
				if rerr != nil || !slices.ContainsFunc(saved, func(s savedSandbox) bool { return s.Name == name }) {
					err = fmt.Errorf("Add %s returned before the state file held it: %v", name, rerr)
				}
				if i%3 == 0 && err == nil {
					err = h.Remove(name)
				}
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	saved, err := readState(filepath.Join(dir, "state.json"))
	if err != nil || len(saved) != n-n/3 || len(h.List()) != n-n/3 {
		t.Fatalf("state file: %v, %d entries, registry %d", err, len(saved), len(h.List()))
	}
}
