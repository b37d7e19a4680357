//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/agentrelay/agentrelay/guest"
	"github.com/agentrelay/agentrelay/host"
)

const sandboxHelp = `Usage: relay sandbox add NAME --guest SPEC --socket PATH [--exec-log DIR]
                    [--handshake auto|0.4|0.5] [--ready-timeout DUR]
       relay sandbox rm NAME
       relay sandbox ls [--json]

Add, remove and list the sandboxes of a running host daemon ('relay host')
through its control API. add returns once the sandbox's client socket
listens (the sandbox then waits for its guest's core.ready, as relay serve
does); rm returns once its clients are closed, their sessions killed in the
guest, its socket removed and its exec.log flushed. Relative paths are
made absolute here.

Flags:
      --control PATH        the daemon's control socket; default
                            $RELAY_HOST_CONTROL, else
                            $XDG_RUNTIME_DIR/agentrelay/host.sock, else
                            /run/agentrelay/host.sock
      --guest SPEC          add: the guest's console, unix:PATH (a console on
                            a listening Unix socket, QEMU style) or
                            vsock:PATH:PORT (Firecracker / Cloud Hypervisor
                            hybrid vsock); required
      --socket PATH         add: the sandbox's client socket; required
      --exec-log DIR        add: directory for the sandbox's exec.log
      --handshake FORM      add: the clients' handshake, auto (default), 0.4
                            or 0.5
      --ready-timeout DUR   add: how long to wait for the guest's core.ready
                            (default 60s)
      --json                ls: print the sandboxes as the API's JSON array
  -h, --help                print this help

NAME is 1 to 64 letters, digits, '_', '.' or '-'. ls shows each sandbox's
state: waiting (for the guest's core.ready), serving, guest_gone (its guest's
stream ended, it never became ready, or it could not be reached after a
restart) or stopped.

Exit status: 0; 1 if the daemon refused or cannot be reached (its message
is printed); 2 on a usage error.

Examples:
  relay sandbox add vm1 --guest unix:/run/vm1/console.sock --socket /run/agentrelay/vm1.sock
  relay sandbox add vm2 --guest vsock:/run/vm2/v.sock:1024 --socket /run/agentrelay/vm2.sock --exec-log /var/log/agentrelay/vm2
  relay sandbox ls
  relay sandbox rm vm1
  relay exec --socket /run/agentrelay/vm2.sock -- uname -a
`

// sandboxFlags are relay sandbox's flags, all subcommands' together.
type sandboxFlags struct {
	control, guest, socket, execLog, handshake string
	readyTimeout                               time.Duration
	json                                       bool
}

// sandboxCmd runs relay sandbox add|rm|ls.
func sandboxCmd(args []string) int {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	var f sandboxFlags
	fs.StringVar(&f.control, "control", host.DefaultControl(), "")
	fs.StringVar(&f.guest, "guest", "", "")
	fs.StringVar(&f.socket, "socket", "", "")
	fs.StringVar(&f.execLog, "exec-log", "", "")
	fs.StringVar(&f.handshake, "handshake", "", "")
	fs.Var(durationFlag{&f.readyTimeout}, "ready-timeout", "")
	fs.BoolVar(&f.json, "json", false, "")
	// Flags may come before or after the action and the name.
	var pos []string
	for {
		if code := parse(fs, "sandbox", sandboxHelp, args); code >= 0 {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if len(pos) == 0 {
		return usageError("sandbox", "want an action: add, rm or ls")
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	only := func(action string, allowed ...string) int {
		ok := map[string]bool{"control": true}
		for _, a := range allowed {
			ok[a] = true
		}
		for name := range set {
			if !ok[name] {
				return usageError("sandbox", "--%s is not a flag of %s", name, action)
			}
		}
		return -1
	}
	c := host.NewClient(f.control)
	ctx := context.Background()
	switch action := pos[0]; action {
	case "add":
		if code := only("add", "guest", "socket", "exec-log", "handshake", "ready-timeout"); code >= 0 {
			return code
		}
		if len(pos) != 2 {
			return usageError("sandbox", "add wants one NAME, got %d", len(pos)-1)
		}
		spec, err := f.spec()
		if err != nil {
			return usageError("sandbox", "%v", err)
		}
		in, err := c.Add(ctx, pos[1], spec)
		if err != nil {
			return apiFailure(err)
		}
		fmt.Printf("sandbox %s %s on %s (loop %d)\n", in.Name, in.State, in.Socket, in.Loop)
		return 0
	case "rm":
		if code := only("rm"); code >= 0 {
			return code
		}
		if len(pos) != 2 {
			return usageError("sandbox", "rm wants one NAME, got %d", len(pos)-1)
		}
		if err := c.Remove(ctx, pos[1]); err != nil {
			return apiFailure(err)
		}
		return 0
	case "ls":
		if code := only("ls", "json"); code >= 0 {
			return code
		}
		if len(pos) != 1 {
			return usageError("sandbox", "ls takes no argument, got %q", pos[1])
		}
		list, err := c.List(ctx)
		if err != nil {
			return apiFailure(err)
		}
		if f.json {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			enc.Encode(list)
			return 0
		}
		printSandboxes(list)
		return 0
	default:
		return usageError("sandbox", "unknown action %q: want add, rm or ls", action)
	}
}

// spec makes add's flags a host.Spec, paths made absolute: the daemon's
// working directory is not the caller's.
func (f sandboxFlags) spec() (host.Spec, error) {
	if f.guest == "" || f.socket == "" {
		return host.Spec{}, errors.New("add needs --guest and --socket")
	}
	g, err := guest.ParseSpec(f.guest)
	if err != nil {
		return host.Spec{}, fmt.Errorf("--guest: %v", err)
	}
	if g.IsSocket() {
		if g.Path, err = filepath.Abs(g.Path); err != nil {
			return host.Spec{}, fmt.Errorf("--guest: %v", err)
		}
	}
	s := host.Spec{Guest: g.String(), Handshake: f.handshake}
	if s.Socket, err = filepath.Abs(f.socket); err != nil {
		return host.Spec{}, fmt.Errorf("--socket: %v", err)
	}
	if f.execLog != "" {
		if s.ExecLog, err = filepath.Abs(f.execLog); err != nil {
			return host.Spec{}, fmt.Errorf("--exec-log: %v", err)
		}
	}
	if f.readyTimeout > 0 {
		s.ReadyTimeout = f.readyTimeout.String()
	}
	return s, nil
}

// apiFailure prints what the daemon said (or why it could not be asked).
func apiFailure(err error) int {
	fmt.Fprintf(os.Stderr, "relay sandbox: %v\n", err)
	return exitFailure
}

// printSandboxes prints the sandboxes as a table.
func printSandboxes(list []host.Info) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tLOOP\tCLIENTS\tTO_GUEST\tTO_CLIENT\tSOCKET\tGUEST\tERROR")
	for _, in := range list {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", in.Name, in.State, in.Loop, in.Clients,
			in.Counters["frames_to_guest"], in.Counters["frames_to_client"], in.Socket, in.Guest, in.Error)
	}
	tw.Flush()
}
