//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/agentrelay/agentrelay/cmd/internal/serve"
)

// A command is one subcommand: its name, its synopsis, what it does.
type command struct {
	name, synopsis, summary string
	run                     func([]string) int
}

// commands are the subcommands, in the order help lists them. Set in init:
// help and completion read the table they are in.
var commands []command

func init() {
	commands = []command{
		{"serve", "[serve] [FLAGS]", "run the relay for one guest (flags alone mean serve)",
			func(args []string) int { return serve.Main("relay", serve.Reactor, args) }},
		{"exec", "exec [FLAGS] [--] CMD...", "run a command in the guest through the relay", execCmd},
		{"host", "host [FLAGS]", "run the host daemon: many sandboxes in one process", hostCmd},
		{"sandbox", "sandbox add|rm|ls ...", "add, remove or list a host daemon's sandboxes", sandboxCmd},
		{"guest", "guest --listen PATH KIND", "play a guest on a console socket, for trying host without a VM", guestCmd},
		{"stats", "stats --debug-addr ADDR", "print a running relay's or host daemon's counters", statsCmd},
		{"version", "version", "print the version, VCS revision and Go version", versionCmd},
		{"completion", "completion bash|zsh", "print a shell completion script", completionCmd},
		{"help", "help [COMMAND]", "print this help, or a command's", helpCmd},
	}
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			usage(os.Stdout)
			return 0
		case "-version", "--version":
			return versionCmd(args[1:])
		}
	}
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(args)
		}
	}
	fmt.Fprintf(os.Stderr, "relay: unknown command %q\n\n", name)
	usage(os.Stderr)
	return exitUsage
}

func helpCmd(args []string) int {
	switch {
	case len(args) > 1:
		return usageError("help", "want one command name, got %q", args)
	case len(args) == 0 || args[0] == "help":
		usage(os.Stdout)
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run([]string{"--help"})
		}
	}
	return usageError("help", "unknown command %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprint(w, "relay is the agent relay for microVM sandbox hosts: it multiplexes up to 16\nclients on a Unix socket onto the byte stream of a guest's console.\n\nUsage:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  relay %-25s %s\n", c.synopsis, c.summary)
	}
	fmt.Fprint(w, `
Run 'relay COMMAND --help' for a command's flags and examples;
'relay --version' is 'relay version'.

serve's --guest SPEC: unix:PATH | vsock:PATH:PORT | echo |
  builtin (runs commands as host processes: no isolation)
The socket of serve and exec: --socket, else $RELAY_SOCKET, else
$XDG_RUNTIME_DIR/agentrelay/agent.sock, else /run/agentrelay/agent.sock.
The control socket of host and sandbox: --control, else $RELAY_HOST_CONTROL,
else $XDG_RUNTIME_DIR/agentrelay/host.sock, else /run/agentrelay/host.sock.
`)
}
