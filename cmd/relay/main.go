package main

import (
	"fmt"
	"github.com/agentrelay/agentrelay/cmd/internal/serve"
	"os"
	"strings"
)

func main() {
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var code int
	switch cmd {
	case "serve":
		code = serve.Main("relay", serve.Reactor, args)
	case "exec":
		code = execCmd(args)
	case "stats":
		code = statsCmd(args)
	case "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "relay: unknown command %q\n", cmd)
		usage()
		code = 2
	}
	os.Exit(code)
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  relay [serve] --socket PATH --guest SPEC [--exec-log DIR] [--ready-timeout DUR] [--debug-addr ADDR]
  relay exec --socket PATH [-t] [-e K=V]... [-w DIR] -- CMD [ARGS...]
  relay stats --debug-addr ADDR

SPEC: unix:PATH | vsock:PATH:PORT | echo | builtin (runs commands as host processes: no isolation)
`)
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }
