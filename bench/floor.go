package bench

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
)

// FloorEnv names the environment variable that turns a process started by
// StartFloor into the floor echo server; its value is the socket path.
const FloorEnv = "AGENTRELAY_BENCH_FLOOR"

// EchoGuestEnv names the environment variable that turns a process started
// by the benchmarks into an external echo guest (ServeEchoGuest); its value
// is the socket path.
const EchoGuestEnv = "AGENTRELAY_BENCH_GUEST"

// ServeFloor is the physical floor of the in-process path: a bare
// Unix-socket echo at path that sends the same handshake a relay does
// (offset 0 and a core.ready frame) and then writes back every byte it
// reads. Each connection gets its own OS thread doing blocking read/write
// system calls on a raw socket: the least work that can move the bytes,
// with no framing, no netpoller and no goroutine scheduling in between. It
// serves until the process is killed.
func ServeFloor(path string) error {
	ready, err := frame.AppendMessage(binary.BigEndian.AppendUint32(nil, 0), 0, frame.TypeReady,
		frame.Ready{BootTimeNs: 1, InitTimeNs: 2, ReadyTimeNs: 3})
	if err != nil {
		return err
	}
	return serveEcho("floor", path, ready)
}

// ServeEchoGuest is the external echo guest: a guest console on a listening
// Unix socket at path, as QEMU's -chardev socket,server=on offers one,
// reached by a relay with --guest unix:path. On every connection it sends a
// core.ready frame (the in-process echo guest's timings) and then reflects
// every byte, so frames come back unchanged without being parsed. It is a
// process of its own so that its wake-ups are real ones, and it serves
// connection after connection (a relay may reconnect) on the same blocking
// loop as ServeFloor, until the process is killed.
func ServeEchoGuest(path string) error {
	ready, err := frame.AppendMessage(nil, 0, frame.TypeReady,
		frame.Ready{BootTimeNs: 118_000_000, InitTimeNs: 4_200_000, ReadyTimeNs: 122_500_000})
	if err != nil {
		return err
	}
	return serveEcho("echo guest", path, ready)
}

// serveEcho listens on path and, on each connection, writes hello and then
// echoes.
func serveEcho(name, path string, hello []byte) error {
	os.Remove(path)
	ln, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := unix.Bind(ln, &unix.SockaddrUnix{Name: path}); err != nil {
		return fmt.Errorf("%s: bind %s: %w", name, path, err)
	}
	if err := unix.Listen(ln, 64); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	for {
		fd, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		if err == unix.EINTR || err == unix.ECONNABORTED {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: accept: %w", name, err)
		}
		go echo(fd, hello)
	}
}

func echo(fd int, hello []byte) {
	// Leave the thread locked: it dies with the connection instead of
	// going back to the scheduler.
	runtime.LockOSThread()
	defer unix.Close(fd)
	if writeAll(fd, hello) != nil {
		return
	}
	buf := make([]byte, 256<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return
		}
		if writeAll(fd, buf[:n]) != nil {
			return
		}
	}
}

func writeAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}
