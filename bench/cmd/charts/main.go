package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	in := flag.String("in", "out/bench.txt", "benchmark output to read")
	out := flag.String("out", "out", "directory for the PNG files")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "charts:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	all, err := Parse(bytes.NewReader(b))
	if err != nil {
		return err
	}
	hostFailed, err := Failures(bytes.NewReader(b), "Host")
	if err != nil {
		return err
	}
	rs, host := Of(all, "Relay"), Of(all, "Host")
	if len(rs) == 0 && len(host) == 0 && len(hostFailed) == 0 {
		return fmt.Errorf("%s: no BenchmarkRelay or BenchmarkHost results", in)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if len(host) > 0 || len(hostFailed) > 0 {
		path := filepath.Join(out, "targets-host.md")
		if err := os.WriteFile(path, []byte(HostTargets(host, hostFailed)), 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", path)
	}
	if len(rs) == 0 {
		return nil
	}
	med := Medians(rs)
	for _, pa := range paths {
		for _, c := range charts {
			path, err := c(med, pa, out)
			if err != nil {
				return err
			}
			if path != "" {
				fmt.Println("wrote", path)
			}
		}
	}
	if tab := Targets(rs); tab != "" {
		path := filepath.Join(out, "targets.md")
		if err := os.WriteFile(path, []byte(tab), 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", path)
	}
	return nil
}
