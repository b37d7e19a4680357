package host

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/agentrelay/agentrelay/guest"
	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/unixsock"
)

// Spec is what PUT /sandboxes/{name} carries and the state file keeps: the
// sandbox as its owner asked for it.
type Spec struct {
	// Guest is the guest's console: unix:PATH or vsock:PATH:PORT.
	Guest string `json:"guest"`
	// Socket is the absolute path of the sandbox's client socket.
	Socket string `json:"socket"`
	// ExecLog, if set, is the absolute path of the directory for exec.log.
	ExecLog string `json:"exec_log,omitempty"`
	// Handshake is auto (the default), 0.4 or 0.5.
	Handshake string `json:"handshake,omitempty"`
	// ReadyTimeout bounds the wait for core.ready: a Go duration ("60s")
	// or seconds ("60"). Default 60 s.
	ReadyTimeout string `json:"ready_timeout,omitempty"`
}

// MaxNameLen bounds a sandbox's name.
const MaxNameLen = 64

// MaxReadyTimeout bounds ready_timeout: above it a typo would hold a socket
// and a guest connection for hours.
const MaxReadyTimeout = time.Hour

// DefaultReadyTimeout is a sandbox's ready timeout when its spec gives none.
const DefaultReadyTimeout = 60 * time.Second

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// CheckName checks a sandbox's name: 1 to 64 of [A-Za-z0-9_.-], not "."
// or "..", so that it reads the same in a URL path, a log line and a
// metric label.
func CheckName(name string) error {
	switch {
	case name == "":
		return kindf(ErrInvalid, "empty sandbox name")
	case len(name) > MaxNameLen:
		return kindf(ErrInvalid, fmt.Sprintf("sandbox name is %d bytes, over the limit of %d", len(name), MaxNameLen))
	case !nameRE.MatchString(name) || name == "." || name == "..":
		return kindf(ErrInvalid, fmt.Sprintf("sandbox name %q: use letters, digits, '_', '.' and '-' only", name))
	}
	return nil
}

// config is a Spec checked and parsed.
type config struct {
	spec         Spec
	guest        guest.Spec
	handshake    relay.Handshake
	readyTimeout time.Duration
}

// parse checks s without touching the file system beyond what
// unixsock.Check reads, and fills in its defaults.
func (s Spec) parse() (config, error) {
	c := config{spec: s}
	bad := func(format string, a ...any) (config, error) {
		return config{}, withKind(ErrInvalid, fmt.Errorf(format, a...))
	}
	if s.Guest == "" {
		return bad("guest is required (unix:PATH or vsock:PATH:PORT)")
	}
	g, err := guest.ParseSpec(s.Guest)
	if err != nil {
		return bad("guest %q: %v", s.Guest, err)
	}
	if !g.IsSocket() {
		return bad("guest %q: a host daemon serves unix:PATH and vsock:PATH:PORT guests only; echo and builtin run in a relay's own process (relay serve)", s.Guest)
	}
	if !filepath.IsAbs(g.Path) {
		return bad("guest %q: the path must be absolute", s.Guest)
	}
	c.guest = g
	if s.Socket == "" {
		return bad("socket is required")
	}
	if !filepath.IsAbs(s.Socket) {
		return bad("socket %q: the path must be absolute", s.Socket)
	}
	if err := unixsock.CheckPath(s.Socket); err != nil {
		return bad("socket: %v", err)
	}
	if s.ExecLog != "" && !filepath.IsAbs(s.ExecLog) {
		return bad("exec_log %q: the path must be absolute", s.ExecLog)
	}
	if c.handshake, err = relay.ParseHandshake(s.Handshake); err != nil {
		return bad("%v", err)
	}
	c.spec.Handshake = c.handshake.String()
	c.readyTimeout = DefaultReadyTimeout
	if s.ReadyTimeout != "" {
		if c.readyTimeout, err = parseDuration(s.ReadyTimeout); err != nil {
			return bad("ready_timeout %q: %v", s.ReadyTimeout, err)
		}
		if c.readyTimeout <= 0 || c.readyTimeout > MaxReadyTimeout {
			return bad("ready_timeout %q: want more than 0 and at most %s", s.ReadyTimeout, MaxReadyTimeout)
		}
	}
	c.spec.ReadyTimeout = c.readyTimeout.String()
	return c, nil
}

// parseDuration reads seconds ("60", "2.5") or a Go duration ("1500ms"), as
// relay serve's --ready-timeout does.
func parseDuration(s string) (time.Duration, error) {
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		if secs > float64(MaxReadyTimeout/time.Second) || secs != secs {
			return 0, errors.New("out of range")
		}
		return time.Duration(secs * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("want seconds (60) or a Go duration (1500ms)")
	}
	return d, nil
}
