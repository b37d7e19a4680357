package client

import "testing"

func TestDefaultSocket(t *testing.T) {
	for _, tc := range []struct{ relay, xdg, want string }{
		{"/srv/r.sock", "/run/user/1000", "/srv/r.sock"},
		{"", "/run/user/1000", "/run/user/1000/agentrelay/agent.sock"},
		{"", "relative/dir", "/run/agentrelay/agent.sock"}, // invalid per the XDG spec
		{"", "", "/run/agentrelay/agent.sock"},
	} {
		t.Setenv("RELAY_SOCKET", tc.relay)
		t.Setenv("XDG_RUNTIME_DIR", tc.xdg)
		if got := DefaultSocket(); got != tc.want {
			t.Errorf("RELAY_SOCKET=%q XDG_RUNTIME_DIR=%q: %q, want %q", tc.relay, tc.xdg, got, tc.want)
		}
	}
}
