package host

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
)

// Client talks to a host daemon's control API over its Unix socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client of the daemon whose control socket is path.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}
	return &Client{path: path, hc: &http.Client{Transport: tr}}
}

// DefaultControl is where the daemon's control socket is unless --control
// or $RELAY_HOST_CONTROL says otherwise: $XDG_RUNTIME_DIR/agentrelay/host.sock,
// else /run/agentrelay/host.sock.
func DefaultControl() string {
	if p := os.Getenv("RELAY_HOST_CONTROL"); p != "" {
		return p
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "agentrelay", "host.sock")
	}
	return "/run/agentrelay/host.sock"
}

// Add creates sandbox name (PUT /sandboxes/{name}).
func (c *Client) Add(ctx context.Context, name string, s Spec) (Info, error) {
	var in Info
	b, err := json.Marshal(s)
	if err != nil {
		return in, err
	}
	return in, c.do(ctx, http.MethodPut, "/sandboxes/"+url.PathEscape(name), b, http.StatusCreated, &in)
}

// Remove ends sandbox name (DELETE /sandboxes/{name}).
func (c *Client) Remove(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/sandboxes/"+url.PathEscape(name), nil, http.StatusNoContent, nil)
}

// Get returns sandbox name (GET /sandboxes/{name}).
func (c *Client) Get(ctx context.Context, name string) (Info, error) {
	var in Info
	return in, c.do(ctx, http.MethodGet, "/sandboxes/"+url.PathEscape(name), nil, http.StatusOK, &in)
}

// List returns every sandbox (GET /sandboxes).
func (c *Client) List(ctx context.Context) ([]Info, error) {
	var out []Info
	return out, c.do(ctx, http.MethodGet, "/sandboxes", nil, http.StatusOK, &out)
}

// do makes one request. An answer other than want is an *APIError carrying
// the daemon's message and status.
func (c *Client) do(ctx context.Context, method, path string, body []byte, want int, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://relay-host"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the host daemon at %s: %w (is 'relay host --control %s' running?)", c.path, unwrapURL(err), c.path)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != want {
		e := &APIError{Status: resp.StatusCode}
		if ct != "application/json" || json.Unmarshal(b, e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
		}
		return e
	}
	if out == nil {
		return nil
	}
	if ct != "application/json" {
		return fmt.Errorf("%s %s: answered %q, not JSON: is %s a relay host daemon's control socket?", method, path, ct, c.path)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// unwrapURL drops net/http's "Put \"http://relay-host/...\":" prefix, which
// names a host that does not exist.
func unwrapURL(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
