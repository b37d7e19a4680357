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

	"github.com/agentrelay/agentrelay/host"
)

const statsHelp = `Usage: relay stats --debug-addr ADDR

Print a running relay's counters as a table. They come from the /stats
endpoint of the relay's debug listener, which 'relay serve --debug-addr ADDR'
opens (loopback only). For a host daemon ('relay host --debug-addr ADDR')
the table has a row per sandbox (its state, loop, clients and main
counters), then the host's totals.

Flags:
      --debug-addr ADDR   the address the relay's --debug-addr was given
                          (host:port)
  -h, --help              print this help

Exit status: 0; 1 if the endpoint cannot be reached or does not answer with
the relay's counters; 2 on a usage error.

Examples:
  relay stats --debug-addr 127.0.0.1:6060
  watch -n1 relay stats --debug-addr 127.0.0.1:6060
  relay stats --debug-addr 127.0.0.1:6061         # a host daemon's sandboxes
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
	m, hs, err := fetchStats(*addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "relay stats: %v\n", err)
		return exitFailure
	}
	if hs != nil {
		printHostStats(hs)
		return 0
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

// hostStats is a host daemon's /stats.
type hostStats struct {
	Host      host.HostStats `json:"host"`
	Sandboxes []host.Info    `json:"sandboxes"`
}

// printHostStats prints a row per sandbox, then the totals.
func printHostStats(hs *hostStats) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SANDBOX\tSTATE\tLOOP\tCLIENTS\tTO_GUEST\tTO_CLIENT\tBYTES_TO_GUEST\tBYTES_TO_CLIENT\tEVICTIONS\tPROTOCOL_ERRORS")
	for _, in := range hs.Sandboxes {
		c := in.Counters
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", in.Name, in.State, in.Loop, in.Clients,
			c["frames_to_guest"], c["frames_to_client"], c["bytes_to_guest"], c["bytes_to_client"], c["evictions"], c["protocol_errors"])
	}
	tw.Flush()
	fmt.Println()
	tw = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	for _, st := range []string{host.StateWaiting, host.StateServing, host.StateGuestGone, host.StateStopped} {
		fmt.Fprintf(tw, "sandboxes %s\t%d\n", st, hs.Host.Sandboxes[st])
	}
	for _, l := range hs.Host.Loops {
		fmt.Fprintf(tw, "loop %d sandboxes\t%d\n", l.Index, l.Sandboxes)
	}
	if hs.Host.BudgetMax > 0 {
		fmt.Fprintf(tw, "memory budget used\t%d of %d bytes (%d refused)\n", hs.Host.BudgetUsed, hs.Host.BudgetMax, hs.Host.BudgetRefuse)
	}
	tw.Flush()
}

// fetchStats reads the counters of a relay (m) or a host daemon (hs),
// saying what went wrong in terms of the relay rather than of HTTP or JSON
// where it can.
func fetchStats(addr string) (m map[string]uint64, hs *hostStats, err error) {
	url := "http://" + addr + "/stats"
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return nil, nil, fmt.Errorf("cannot reach the relay's debug endpoint at %s: %v (is the relay running with --debug-addr %s?)", addr, errno, addr)
		}
		return nil, nil, fmt.Errorf("cannot reach the relay's debug endpoint at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s answered %s, not the relay's counters: is %s a relay's --debug-addr?", url, resp.Status, addr)
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "application/json" {
		return nil, nil, fmt.Errorf("%s answered %s, not the relay's counters (JSON): is %s a relay's --debug-addr?", url, describe(ct), addr)
	}
	var raw map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(&raw); err != nil {
		return nil, nil, fmt.Errorf("%s: the counters do not decode: %w", url, err)
	}
	if _, ok := raw["sandboxes"]; ok {
		hs = &hostStats{}
		if err := json.Unmarshal(raw["host"], &hs.Host); err != nil {
			return nil, nil, fmt.Errorf("%s: the host's counters do not decode: %w", url, err)
		}
		if err := json.Unmarshal(raw["sandboxes"], &hs.Sandboxes); err != nil {
			return nil, nil, fmt.Errorf("%s: the sandboxes' counters do not decode: %w", url, err)
		}
		return nil, hs, nil
	}
	m = make(map[string]uint64, len(raw))
	for k, v := range raw {
		var n uint64
		if err := json.Unmarshal(v, &n); err != nil {
			return nil, nil, fmt.Errorf("%s: the counters do not decode: %s: %w", url, k, err)
		}
		m[k] = n
	}
	return m, nil, nil
}

func describe(contentType string) string {
	if contentType == "" {
		return "with no Content-Type"
	}
	return strings.TrimSpace(contentType)
}
