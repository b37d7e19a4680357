//go:build linux

package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
)

const versionHelp = `Usage: relay version
       relay --version

Print the module's version, the VCS revision the binary was built from
(with "modified" if the tree had uncommitted changes) and the Go version,
as recorded in the binary's build information.

Flags:
  -h, --help   print this help

Examples:
  relay version
  go version -m $(command -v relay)    # the same information, and more
`

func versionCmd(args []string) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if code := parse(fs, "version", versionHelp, args); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return usageError("version", "unexpected argument %q", fs.Arg(0))
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintln(os.Stderr, "relay version: the binary carries no build information")
		return exitFailure
	}
	printVersion(os.Stdout, bi)
	return 0
}

func printVersion(w io.Writer, bi *debug.BuildInfo) {
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	rev := settings["vcs.revision"]
	switch {
	case rev == "":
		rev = "unknown (built without VCS information, e.g. -buildvcs=false)"
	case settings["vcs.modified"] == "true":
		rev += " (modified)"
	}
	if t := settings["vcs.time"]; t != "" {
		rev += ", committed " + t
	}
	fmt.Fprintf(w, "relay %s\n", bi.Main.Version)
	fmt.Fprintf(w, "module    %s\n", bi.Main.Path)
	fmt.Fprintf(w, "revision  %s\n", rev)
	fmt.Fprintf(w, "go        %s %s/%s\n", bi.GoVersion, runtime.GOOS, runtime.GOARCH)
}
