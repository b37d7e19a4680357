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

// ServeFloor is the physical floor: a bare Unix-socket echo at path that
// sends the same handshake a relay does (offset 0 and a core.ready frame)
// and then writes back every byte it reads. Each connection gets its own
// OS thread doing blocking read/write system calls on a raw socket: the
// least work that can move the bytes, with no framing, no netpoller and no
// goroutine scheduling in between. It serves until the process is killed.
func ServeFloor(path string) error {
	ready, err := frame.AppendMessage(binary.BigEndian.AppendUint32(nil, 0), 0, frame.TypeReady,
		frame.Ready{BootTimeNs: 1, InitTimeNs: 2, ReadyTimeNs: 3})
	if err != nil {
		return err
	}
	os.Remove(path)
	ln, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	if err := unix.Bind(ln, &unix.SockaddrUnix{Name: path}); err != nil {
		return fmt.Errorf("floor: bind %s: %w", path, err)
	}
	if err := unix.Listen(ln, 64); err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	for {
		fd, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		if err == unix.EINTR || err == unix.ECONNABORTED {
			continue
		}
		if err != nil {
			return fmt.Errorf("floor: accept: %w", err)
		}
		go echo(fd, ready)
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
