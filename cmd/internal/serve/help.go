package serve

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// writeHelp prints the serve command's help: every flag in --long form with
// its default, then examples.
func writeHelp(w io.Writer, prog string) {
	var c config
	fs := newFlags(prog, &c)
	fmt.Fprintf(w, `Usage: %[1]s serve --socket PATH --guest SPEC [flags]
       %[1]s --socket PATH --guest SPEC [flags]   (serve is the default command)

Serve one guest console to up to 16 clients (128 with the 0.5 handshake) on a Unix socket: route their
frames by correlation id, track their sessions, kill a departed client's
processes and capture exec output to exec.log.

Flags:
`, prog)
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		switch f.Name {
		case "socket", "exec-log":
			arg = "PATH"
		case "guest":
			arg = "SPEC"
		case "debug-addr":
			arg = "HOST:PORT"
		case "log-format":
			arg = "text|json"
		case "allow-uid":
			arg = "UID"
		case "client-buffer", "output-budget":
			arg = "SIZE"
		case "handshake":
			arg = "auto|0.4|0.5"
		case "ready-timeout", "accept-wait", "quarantine-timeout":
			arg = "DURATION"
		}
		fmt.Fprintf(w, "  --%s %s\n", f.Name, arg)
		usage = strings.TrimSuffix(usage, "; required")
		if d := f.DefValue; d != "" && d != "[]" && f.Name != "allow-uid" {
			usage += " (default " + d + ")"
		} else if strings.Contains(f.Usage, "; required") {
			usage += " (required)"
		}
		fmt.Fprintf(w, "        %s\n", usage)
	})
	fmt.Fprintf(w, `  --help
        print this help

Environment:
  RELAY_LOG_LEVEL   debug, info, warn or error (default info)
  GOMEMLIMIT        overrides the memory limit set from the relay's bound

Examples:
  # A Firecracker or Cloud Hypervisor guest over hybrid vsock, port 1024:
  %[1]s serve --socket /run/agentrelay/vm1.sock --guest vsock:/run/vm1/vsock.sock:1024 --exec-log /var/log/agentrelay/vm1

  # A QEMU console on a Unix socket, with metrics on localhost:9464:
  %[1]s serve --socket /run/agentrelay/vm2.sock --guest unix:/run/vm2/console.sock --debug-addr 127.0.0.1:9464

  # Let uid 1000 connect besides root, and give clients 16 MiB buffers:
  %[1]s serve --socket /run/agentrelay/agent.sock --guest unix:/run/vm3/console.sock --allow-uid 0 --allow-uid 1000 --client-buffer 16MiB

  # Try it without a VM (builtin runs commands as host processes: no isolation):
  %[1]s serve --socket /tmp/agentrelay/agent.sock --guest builtin --exec-log /tmp/agentrelay --log-format json
`, prog)
}
