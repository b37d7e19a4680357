package guest

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzParseSpec: ParseSpec never panics, and what it accepts formats back
// to a spec that parses to the same value.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"echo", "builtin", "unix:/run/console.sock", "vsock:/run/v.sock:1024",
		"vsock:/a:b:52", "vsock::1", "unix:", "vsock:/x:4294967295", "echo:", "", ":",
		"vsock:/x:00052", "unix:" + strings.Repeat("p", 120),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseSpec(s)
		if err != nil {
			if spec != (Spec{}) {
				t.Fatalf("error with a non-zero spec %+v", spec)
			}
			return
		}
		again, err := ParseSpec(spec.String())
		if err != nil || again != spec {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, spec, spec.String(), again, err)
		}
		if (spec.Kind == KindUnix || spec.Kind == KindVsock) && (spec.Path == "" || len(spec.Path) > maxSocketPath) {
			t.Fatalf("accepted path %q", spec.Path)
		}
	})
}

// FuzzVsockHandshake plays a hybrid vsock socket that answers the CONNECT
// line with arbitrary bytes. The handshake must never panic or hang; it
// succeeds only on "OK <port>\n" within MaxVsockReply bytes, and then every
// byte after the newline is still on the connection, in order.
func FuzzVsockHandshake(f *testing.F) {
	for _, s := range []string{
		"OK 1073741824\n", "OK 1073741824\nguest bytes", "OK 5\n\x00\x00\x00\x1c",
		"ERR\n", "OK\n", "OK 12", "", "OK 4294967296\n", "\n", "OK 1\r\n",
		strings.Repeat("9", 70) + "\n", "OK " + strings.Repeat("0", 60) + "1\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, reply []byte) {
		client, server := net.Pipe()
		defer client.Close()
		go func() {
			defer server.Close()
			line := make([]byte, len("CONNECT 52\n"))
			if _, err := io.ReadFull(server, line); err != nil || string(line) != "CONNECT 52\n" {
				return
			}
			server.Write(reply)
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := vsockHandshake(ctx, client, 52)

		nl := bytes.IndexByte(reply, '\n')
		okLine := nl >= 0 && nl < MaxVsockReply
		if okLine {
			_, perr := ParseVsockReply(reply[:nl+1])
			okLine = perr == nil
		}
		if (err == nil) != okLine {
			t.Fatalf("reply %q: handshake error %v, want success %v", reply, err, okLine)
		}
		if err != nil {
			return
		}
		if !bytes.HasPrefix(reply, []byte("OK ")) {
			t.Fatalf("accepted %q", reply)
		}
		rest, _ := io.ReadAll(client)
		if !bytes.Equal(rest, reply[nl+1:]) {
			t.Fatalf("after the handshake the connection holds %q, want %q", rest, reply[nl+1:])
		}
	})
}
