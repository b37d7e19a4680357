//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

const statsHelp = `Usage: relay stats --debug-addr ADDR

Print a running relay's counters as a table. They come from the /stats
endpoint of the relay's debug listener, which 'relay serve --debug-addr ADDR'
opens (loopback only).

Flags:
      --debug-addr ADDR   the address the relay's --debug-addr was given
                          (host:port)
  -h, --help              print this help

Exit status: 0; 1 if the endpoint cannot be reached or does not answer with
the relay's counters; 2 on a usage error.

Examples:
  relay stats --debug-addr 127.0.0.1:6060
  watch -n1 relay stats --debug-addr 127.0.0.1:6060
`

// statsCmd prints a running relay's counters as a table.
func statsCmd(args []string) int {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	addr := fs.String("debug-addr", "", "")
	if code := parse(fs, "stats", statsHelp, args); code >= 0 {
		return code
	}
	switch {
	case *addr == "":
		return usageError("stats", "--debug-addr is required")
	case fs.NArg() > 0:
		return usageError("stats", "unexpected argument %q", fs.Arg(0))
	}
	m, err := fetchStats(*addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "relay stats: %v\n", err)
		return exitFailure
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "COUNTER\tVALUE\t")
	for _, k := range names {
		fmt.Fprintf(tw, "%s\t%d\t\n", k, m[k])
	}
	tw.Flush()
	return 0
}

// fetchStats reads the counters, saying what went wrong in terms of the
// relay rather than of HTTP or JSON where it can.
func fetchStats(addr string) (map[string]uint64, error) {
	url := "http://" + addr + "/stats"
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return nil, fmt.Errorf("cannot reach the relay's debug endpoint at %s: %v (is the relay running with --debug-addr %s?)", addr, errno, addr)
		}
		return nil, fmt.Errorf("cannot reach the relay's debug endpoint at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s, not the relay's counters: is %s a relay's --debug-addr?", url, resp.Status, addr)
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "application/json" {
		return nil, fmt.Errorf("%s answered %s, not the relay's counters (JSON): is %s a relay's --debug-addr?", url, describe(ct), addr)
	}
	var m map[string]uint64
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: the counters do not decode: %w", url, err)
	}
	return m, nil
}

func describe(contentType string) string {
	if contentType == "" {
		return "with no Content-Type"
	}
	return strings.TrimSpace(contentType)
}
