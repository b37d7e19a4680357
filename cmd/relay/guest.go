//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentrelay/agentrelay/agent"
	"github.com/agentrelay/agentrelay/guest"
	"github.com/agentrelay/agentrelay/unixsock"
)

const guestHelp = `Usage: relay guest --listen PATH echo|builtin

Play a guest on a console socket, as a VMM does with a VM's console
(QEMU's -chardev socket,server=on): listen on PATH and serve one
connection at a time. It is for trying 'relay host' (and 'relay serve
--guest unix:PATH') without a VM:

  echo      send core.ready, then reflect every frame
  builtin   the guest agent in this process: it runs commands as HOST
            processes with this process's privileges (no isolation)

Flags:
      --listen PATH   the console socket to create (0600, its directory
                      0700); removed when relay guest exits
  -h, --help          print this help

SIGTERM or SIGINT ends it (exit 0), with the commands it started.

Examples:
  relay guest --listen /tmp/relay-host/vm1.console builtin
  relay guest --listen /tmp/relay-host/vm2.console echo
`

// guestCmd serves a guest on a listening console socket.
func guestCmd(args []string) int {
	fs := flag.NewFlagSet("guest", flag.ContinueOnError)
	listen := fs.String("listen", "", "")
	var pos []string
	for {
		if code := parse(fs, "guest", guestHelp, args); code >= 0 {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	switch {
	case *listen == "":
		return usageError("guest", "--listen is required")
	case len(pos) != 1 || (pos[0] != "echo" && pos[0] != "builtin"):
		return usageError("guest", "want one guest: echo or builtin")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	fd, err := unixsock.Listen(*listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "relay guest: --listen: %v\n", err)
		return exitFailure
	}
	f := os.NewFile(uintptr(fd), *listen)
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		os.Remove(*listen)
		fmt.Fprintf(os.Stderr, "relay guest: %v\n", err)
		return exitFailure
	}
	defer os.Remove(*listen)
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	context.AfterFunc(ctx, func() { ln.Close() })

	var ag *agent.Agent
	if pos[0] == "builtin" {
		log.Warn(agent.Warning)
		wd, err := agent.StartWatchdog()
		if err != nil {
			fmt.Fprintf(os.Stderr, "relay guest: %v\n", err)
			return exitFailure
		}
		defer wd.Close()
		ag = agent.New(agent.Options{Watchdog: wd})
	}
	log.Info("guest console listening", "path", *listen, "guest", pos[0])
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			fmt.Fprintf(os.Stderr, "relay guest: accept: %v\n", err)
			return exitFailure
		}
		log.Info("relay connected")
		if ag != nil {
			err = ag.Serve(ctx, conn)
		} else {
			err = echo(ctx, conn)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("connection ended", "err", err)
		} else {
			log.Info("relay disconnected")
		}
	}
}

// echo sends core.ready and reflects every byte until the relay hangs up.
func echo(ctx context.Context, conn net.Conn) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := conn.Write(guest.DefaultReady()); err != nil {
		return err
	}
	_, err := io.Copy(conn, conn)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
