// Command relay-baseline is the goroutine-per-connection port of the original
// relay (package bench/baseline) behind the same command line as
// `relay serve`, for benchmarks. It is not a production binary.
//
//	relay-baseline [serve] --socket PATH --guest SPEC [flags]   (relay-baseline --help lists them)
package main

import (
	"fmt"
	"os"

	"github.com/agentrelay/agentrelay/bench/baseline"
	"github.com/agentrelay/agentrelay/cmd/internal/serve"
	"github.com/agentrelay/agentrelay/relay"
)

var goroutine = serve.Impl{
	Name: "goroutine",
	New:  func(o relay.Options) (serve.Server, error) { return baseline.New(o) },
}

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	} else if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		fmt.Fprintf(os.Stderr, "relay-baseline: unknown command %q (only serve)\n", args[0])
		os.Exit(2)
	}
	os.Exit(serve.Main("relay-baseline", goroutine, args))
}
