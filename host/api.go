package host

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/agentrelay/agentrelay/unixsock"
)

// maxBody bounds a request body: a Spec is a few hundred bytes.
const maxBody = 64 << 10

// Handler serves the control API (see the package documentation).
func (h *Host) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /sandboxes/{name}", h.put)
	mux.HandleFunc("DELETE /sandboxes/{name}", h.delete)
	mux.HandleFunc("GET /sandboxes/{name}", h.get)
	mux.HandleFunc("GET /sandboxes", h.list)
	// Other methods on the API's paths get a 405 in the API's own form.
	mux.HandleFunc("/sandboxes/{name}", methodNotAllowed("GET, PUT, DELETE"))
	mux.HandleFunc("/sandboxes", methodNotAllowed("GET"))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint %s; the API is /sandboxes and /sandboxes/{name}", r.URL.Path))
	})
	return mux
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow))
	}
}

func (h *Host) put(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := CheckName(name); err != nil {
		writeErr(w, err)
		return
	}
	spec, err := decodeSpec(r.Body)
	if err != nil {
		writeErr(w, err)
		return
	}
	in, err := h.Add(r.Context(), name, spec)
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set("Location", "/sandboxes/"+name)
	writeJSON(w, http.StatusCreated, in)
}

// decodeSpec reads exactly one JSON object with Spec's fields and nothing
// else.
func decodeSpec(body io.Reader) (Spec, error) {
	var s Spec
	b, err := io.ReadAll(io.LimitReader(body, maxBody+1))
	if err != nil {
		return s, withKind(ErrInvalid, fmt.Errorf("reading the body: %w", err))
	}
	if len(b) > maxBody {
		return s, kindf(ErrInvalid, fmt.Sprintf("body over %d bytes", maxBody))
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return s, kindf(ErrInvalid, `empty body; want {"guest": "unix:PATH", "socket": "PATH"}`)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return s, withKind(ErrInvalid, fmt.Errorf("malformed body: %w", err))
	}
	if d.More() {
		return s, kindf(ErrInvalid, "malformed body: more than one JSON value")
	}
	return s, nil
}

func (h *Host) delete(w http.ResponseWriter, r *http.Request) {
	if err := h.Remove(r.PathValue("name")); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Host) get(w http.ResponseWriter, r *http.Request) {
	in, err := h.Get(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

func (h *Host) list(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, h.List())
}

// APIError is the body of every error answer.
type APIError struct {
	Message string `json:"message"`
	Status  int    `json:"-"`
}

func (e *APIError) Error() string { return e.Message }

func writeErr(w http.ResponseWriter, err error) { writeError(w, Status(err), err.Error()) }

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, APIError{Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// ListenControl creates the control socket at path with the checks every
// served socket gets (unixsock.Listen: 0600, a private directory, a live
// daemon's socket never taken over, a stale one replaced).
func ListenControl(path string) (net.Listener, error) {
	fd, err := unixsock.Listen(path)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), path)
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	// The socket file is removed by the daemon, once, when it stops.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	return ln, nil
}

// Serve answers the control API on ln until it is closed.
func (h *Host) Serve(ln net.Listener) error {
	hs := &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 5 * time.Second}
	err := hs.Serve(ln)
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
