package bench

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// forwarderSource is the floor of the socket-guest path (csrc/fwd.c): a
// minimal C epoll forwarder, byte-level or, with -f, frame-aware. It is C,
// not Go, so that no runtime (scheduler, sysmon, netpoller) adds wake-ups
// or system calls to the figure it sets.
//
//go:embed csrc/fwd.c
var forwarderSource []byte

// ErrNoCompiler is returned by BuildForwarder when there is no C compiler.
var ErrNoCompiler = errors.New("no C compiler ($CC or cc) to build the forwarder floor with")

// BuildForwarder compiles the forwarder with $CC (default cc) -O2 into dir
// and returns the executable's path.
func BuildForwarder(dir string) (string, error) {
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	ccPath, err := exec.LookPath(cc)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoCompiler, err)
	}
	src := filepath.Join(dir, "fwd.c")
	exe := filepath.Join(dir, "fwd")
	if err := os.WriteFile(src, forwarderSource, 0o600); err != nil {
		return "", err
	}
	out, err := exec.Command(ccPath, "-O2", "-Wall", "-o", exe, src).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("bench: compile the forwarder: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return exe, nil
}
