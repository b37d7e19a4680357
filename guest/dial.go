package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

// Retry pacing for the dialers: a VMM creates its sockets some time after it
// starts and a guest opens its vsock port later still, so both dialers poll.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = 250 * time.Millisecond
)

// handshakeTimeout bounds one CONNECT exchange when ctx has no nearer
// deadline, so a VMM that accepts and never answers costs one retry, not
// the whole wait.
const handshakeTimeout = 2 * time.Second

// MaxVsockReply is the longest reply line DialVsock reads. Firecracker's
// "OK 1073741824\n" is 14 bytes.
const MaxVsockReply = 64

// errVsockProtocol marks a reply that is not what a hybrid vsock socket
// says: retrying cannot help, so DialVsock gives up at once.
var errVsockProtocol = errors.New("not a hybrid vsock reply")

// DialUnix connects to the listening Unix stream socket that carries the
// guest's console (QEMU's -chardev socket,server=on). It retries until it
// succeeds or ctx ends, because the VMM may not have created the socket yet.
func DialUnix(ctx context.Context, path string) (net.Conn, error) {
	return retry(ctx, "unix:"+path, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	})
}

// DialFile connects to a unix: or vsock: guest as DialUnix and DialVsock do
// and returns the connection as a file, for the relay's fd port. The file is
// in blocking mode and registered with no poller: its new owner decides.
func DialFile(ctx context.Context, spec Spec) (*os.File, error) {
	var conn net.Conn
	var err error
	switch spec.Kind {
	case KindUnix:
		conn, err = DialUnix(ctx, spec.Path)
	case KindVsock:
		conn, err = DialVsock(ctx, spec.Path, spec.Port)
	default:
		return nil, fmt.Errorf("%v is not a socket guest", spec)
	}
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*net.UnixConn).File()
}

// DialVsock connects to a guest's vsock port through a Firecracker or Cloud
// Hypervisor hybrid vsock Unix socket: it connects to path, sends
// "CONNECT <port>\n" and expects "OK <host port>\n". It reads the reply one
// byte at a time, so the connection it returns starts exactly at the
// guest's first byte. It retries until ctx ends while the socket is missing
// or the VMM hangs up (no guest listening on the port yet); a reply that is
// not OK fails at once.
func DialVsock(ctx context.Context, path string, port uint32) (net.Conn, error) {
	return retry(ctx, "vsock:"+path+":"+strconv.FormatUint(uint64(port), 10), func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return nil, err
		}
		if err := vsockHandshake(ctx, conn, port); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	})
}

func vsockHandshake(ctx context.Context, conn net.Conn, port uint32) error {
	deadline := time.Now().Add(handshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	var req [32]byte
	line := append(strconv.AppendUint(append(req[:0], "CONNECT "...), uint64(port), 10), '\n')
	if _, err := conn.Write(line); err != nil {
		return fmt.Errorf("send CONNECT: %w", err)
	}
	var buf [MaxVsockReply]byte
	n := 0
	for {
		if n == len(buf) {
			return fmt.Errorf("%w: no newline in the first %d bytes: %q", errVsockProtocol, len(buf), buf[:n])
		}
		m, err := conn.Read(buf[n : n+1])
		n += m
		if m == 1 && buf[n-1] == '\n' {
			break
		}
		if err == io.EOF {
			// The VMM hangs up when nothing listens on the port yet.
			return fmt.Errorf("connection closed after %q: is the guest listening on port %d?", buf[:n], port)
		}
		if err != nil {
			return fmt.Errorf("read CONNECT reply: %w", err)
		}
	}
	if _, err := parseVsockReply(buf[:n]); err != nil {
		return err
	}
	conn.SetDeadline(time.Time{})
	return nil
}

// ParseVsockReply parses a hybrid vsock CONNECT reply, newline included:
// "OK <port>\n" where port is the host-side port the VMM assigned, in
// decimal. Anything else is an error quoting what was received.
func ParseVsockReply(line []byte) (hostPort uint32, err error) {
	hostPort, err = parseVsockReply(line)
	if err != nil {
		return 0, fmt.Errorf("guest: %w", err)
	}
	return hostPort, nil
}

func parseVsockReply(line []byte) (uint32, error) {
	rest, ok := bytes.CutPrefix(line, []byte("OK "))
	if !ok {
		return 0, fmt.Errorf("%w: got %q, want \"OK <port>\\n\"", errVsockProtocol, line)
	}
	digits, ok := bytes.CutSuffix(rest, []byte("\n"))
	if !ok || len(digits) == 0 || len(digits) > 10 {
		return 0, fmt.Errorf("%w: got %q, want \"OK <port>\\n\"", errVsockProtocol, line)
	}
	var v uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: port in %q is not decimal", errVsockProtocol, line)
		}
		v = v*10 + uint64(c-'0')
	}
	if v > 1<<32-1 {
		return 0, fmt.Errorf("%w: port in %q is out of range", errVsockProtocol, line)
	}
	return uint32(v), nil
}

// retry calls dial until it succeeds, fails with errVsockProtocol, or ctx
// ends; the error then carries both ctx's reason and the last failure that
// says something (an attempt cut short by ctx's end does not).
func retry(ctx context.Context, what string, dial func(context.Context) (net.Conn, error)) (net.Conn, error) {
	backoff := minBackoff
	var last error
	for {
		conn, err := dial(ctx)
		if err == nil {
			return conn, nil
		}
		if errors.Is(err, errVsockProtocol) {
			return nil, fmt.Errorf("guest: connect %s: %w", what, err)
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("guest: connect %s: %w (last attempt: %v)", what, ctx.Err(), last)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("guest: connect %s: %w (last attempt: %v)", what, ctx.Err(), last)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}
