package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"text/tabwriter"
	"time"
)

// statsCmd prints a running relay's counters as a table.
func statsCmd(args []string) int {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	addr := fs.String("debug-addr", "", "the relay's --debug-addr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *addr == "" {
		fmt.Fprintln(os.Stderr, "relay stats: --debug-addr is required")
		return 2
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + *addr + "/stats")
	if err != nil {
		fmt.Fprintf(os.Stderr, "relay stats: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	var m map[string]uint64
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		fmt.Fprintf(os.Stderr, "relay stats: bad response: %v\n", err)
		return 1
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
