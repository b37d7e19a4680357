//go:build linux

package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/agent"
	"github.com/agentrelay/agentrelay/frame"
)

const (
	defaultPort = "agent"
	portTimeout = 10 * time.Second
)

func main() {
	start := bootTime()
	level := slog.LevelInfo
	args := cmdline()
	if args["agentd.log"] == "debug" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if os.Getpid() != 1 {
		log.Error("agentd runs as a VM's init (PID 1) only")
		os.Exit(2)
	}
	// Go's default handlers would make a stray `kill 1` end init and
	// panic the kernel, so these are caught and dropped. Caught, not
	// ignored: an ignored disposition survives exec, and the commands
	// would inherit it (a shell cannot even trap a signal ignored at
	// entry).
	drop := make(chan os.Signal, 8)
	signal.Notify(drop, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPIPE)
	go func() {
		for range drop {
		}
	}()
	if err := run(log, args, start); err != nil {
		log.Error("agentd: " + err.Error())
	}
	powerOff(log)
}

func run(log *slog.Logger, args map[string]string, start time.Duration) error {
	if err := mountAll(); err != nil {
		return err
	}
	unix.Sethostname([]byte("agentvm"))
	loadModules(log, "/lib/modules")
	name := defaultPort
	if v := args["agentd.port"]; v != "" {
		name = v
	}
	dev, err := findPort(name, portTimeout)
	if err != nil {
		return err
	}
	p, err := openPort(dev)
	if err != nil {
		return err
	}
	reaper := agent.NewInitReaper()
	ready := bootTime()
	readyFrame, err := frame.AppendMessage(nil, 0, frame.TypeReady, frame.Ready{
		BootTimeNs:  uint64(start),
		InitTimeNs:  uint64(ready - start),
		ReadyTimeNs: uint64(ready),
	})
	if err != nil {
		return err
	}
	log.Info("agentd ready", "port", dev, "boot_ms", start.Milliseconds(), "init_ms", (ready - start).Milliseconds())
	ag := agent.New(agent.Options{Ready: readyFrame, Reaper: reaper})
	for n := 1; ; n++ {
		c, err := p.conn()
		if err != nil {
			return err
		}
		err = ag.Serve(context.Background(), c)
		c.free()
		switch {
		case errors.Is(err, agent.ErrShutdown):
			log.Info("core.shutdown: powering off")
			return nil
		case errors.Is(err, agent.ErrCorruptStream):
			log.Warn("host connection ended: its sessions were killed", "connection", n, "err", err)
			p.drain()
		case err != nil:
			log.Warn("host connection ended: its sessions were killed", "connection", n, "err", err)
		default:
			log.Info("host disconnected: its sessions were killed", "connection", n)
		}
	}
}

// bootTime is the time since the kernel started.
func bootTime() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(ts.Nano())
}

// cmdline returns the kernel command line's key=value words. The kernel
// passes unknown ones to init as environment too, but only those without
// dots.
func cmdline() map[string]string {
	m := map[string]string{}
	b, _ := os.ReadFile("/proc/cmdline")
	for _, w := range strings.Fields(string(b)) {
		if k, v, ok := strings.Cut(w, "="); ok {
			m[k] = v
		}
	}
	return m
}

// powerOff syncs and powers the VM off. PID 1 must not return: the kernel
// would panic.
func powerOff(log *slog.Logger) {
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	log.Error("power off failed; halting", "err", err)
	for {
		unix.Reboot(unix.LINUX_REBOOT_CMD_HALT)
		time.Sleep(time.Hour)
	}
}
