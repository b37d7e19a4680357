//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// findPort returns the /dev path of the virtio-serial port called name,
// waiting up to timeout for the driver to probe it. Without udev there is
// no /dev/virtio-ports/NAME symlink, only sysfs's name attribute beside the
// devtmpfs node (/dev/vportNpM).
func findPort(name string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/vport*/name")
		var seen []string
		for _, p := range names {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			n := strings.TrimSpace(string(b))
			seen = append(seen, n)
			if n == name {
				dev := "/dev/" + filepath.Base(filepath.Dir(p))
				if _, err := os.Stat(dev); err == nil {
					return dev, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtio-serial port named %q after %v (ports: %q)", name, timeout, seen)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A port is the open virtio-serial port. Its descriptor is used raw, never
// through an *os.File, whose finalizer could close it under us.
//
// What the virtio_console driver does with a host that comes and goes
// shapes the code: while no host is connected, poll reports POLLHUP, a
// read returns 0, and a blocking write waits for a host; once one
// connects, a write goes to it.
type port struct {
	fd int
}

func openPort(path string) (*port, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &port{fd: fd}, nil
}

// conn returns an agent.Conn for the next host connection.
func (p *port) conn() (*portConn, error) {
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	return &portConn{fd: p.fd, stopR: pipe[0], stopW: pipe[1], first: true}, nil
}

// A portConn is one host connection on the port. It ends at the first
// hang-up it sees, or at Close; the port stays open for the next one.
type portConn struct {
	fd           int
	stopR, stopW int
	first        bool // no write yet: the next one waits for a host

	mu     sync.Mutex
	closed bool
	freed  bool
}

var errHangUp = errors.New("host disconnected")

var errClosed = errors.New("connection closed")

func (c *portConn) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(c.fd, b)
		switch {
		case n > 0:
			return n, nil
		case err == nil:
			return 0, io.EOF // the host hung up
		case err == unix.EINTR:
			continue
		case err != unix.EAGAIN:
			return 0, fmt.Errorf("read from port: %w", err)
		}
		if _, err := c.wait(unix.POLLIN); err != nil {
			return 0, err
		}
	}
}

func (c *portConn) Write(b []byte) (int, error) {
	if c.first {
		c.first = false
		return c.writeBlocking(b)
	}
	total := 0
	for len(b) > 0 {
		n, err := unix.Write(c.fd, b)
		if n > 0 {
			total += n
			b = b[n:]
			continue
		}
		switch {
		case err == unix.EINTR:
			continue
		case err != unix.EAGAIN:
			return total, fmt.Errorf("write to port: %w", err)
		}
		revents, err := c.wait(unix.POLLOUT)
		if err != nil {
			return total, err
		}
		// No host: the write would wait for the next one, and what
		// this connection owed must not reach it.
		if revents&unix.POLLHUP != 0 {
			return total, errHangUp
		}
	}
	return total, nil
}

// writeBlocking writes b (core.ready, the connection's first frame) in
// blocking mode, which waits for a host to connect: it is the only wait
// the driver offers for a connection (poll reports POLLHUP over and over
// until then). Close does not interrupt it; nothing but a host ends it.
func (c *portConn) writeBlocking(b []byte) (int, error) {
	if err := unix.SetNonblock(c.fd, false); err != nil {
		return 0, fmt.Errorf("port: %w", err)
	}
	defer unix.SetNonblock(c.fd, true)
	total := 0
	for len(b) > 0 {
		n, err := unix.Write(c.fd, b)
		if n > 0 {
			total += n
			b = b[n:]
			continue
		}
		if err != unix.EINTR {
			return total, fmt.Errorf("write to port: %w", err)
		}
	}
	return total, nil
}

// wait polls the port for events and the stop pipe; it returns the port's
// revents, or errClosed once Close was called.
func (c *portConn) wait(events int16) (int16, error) {
	fds := [2]unix.PollFd{{Fd: int32(c.fd), Events: events}, {Fd: int32(c.stopR), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds[:], -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("poll port: %w", err)
		}
		if fds[1].Revents != 0 {
			return 0, errClosed
		}
		return fds[0].Revents, nil
	}
}

// Close makes blocked and later Reads and Writes fail.
func (c *portConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed && !c.freed {
		c.closed = true
		unix.Write(c.stopW, []byte{0})
	}
	return nil
}

// free releases the stop pipe once nothing uses the conn any more.
func (c *portConn) free() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.freed {
		c.freed = true
		unix.Close(c.stopR)
		unix.Close(c.stopW)
	}
}

// drain reads and drops the port's input until the host hangs up: after a
// corrupt stream nothing that host sends can be trusted, and a new
// core.ready would confuse it.
func (p *port) drain() {
	buf := make([]byte, 64<<10)
	fds := [1]unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Read(p.fd, buf)
		if n == 0 && err == nil {
			return
		}
		if err == unix.EAGAIN {
			unix.Poll(fds[:], -1)
		}
	}
}
