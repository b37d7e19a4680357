package client

import (
	"os"
	"path/filepath"
)

// SocketEnv names the environment variable that overrides DefaultSocket's
// choice, as DOCKER_HOST does for docker.
const SocketEnv = "RELAY_SOCKET"

// DefaultSocket is the relay socket a program uses when it is given none:
// $RELAY_SOCKET if set; else agentrelay/agent.sock under
// $XDG_RUNTIME_DIR, the per-user runtime directory of a login session;
// else /run/agentrelay/agent.sock, where the systemd unit in
// contrib/systemd puts it (RuntimeDirectory=agentrelay).
func DefaultSocket() string {
	if s := os.Getenv(SocketEnv); s != "" {
		return s
	}
	// The XDG spec says a relative value is invalid and must be ignored.
	if d := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(d) {
		return filepath.Join(d, "agentrelay", "agent.sock")
	}
	return "/run/agentrelay/agent.sock"
}
