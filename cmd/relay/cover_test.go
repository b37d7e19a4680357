package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/coverage"
	"strings"
	"testing"
)

// Coverage of the binary. Most of cmd/relay (and of the serve command it
// shares with relay-baseline) runs only in the child processes the tests
// start, which a test binary's own counters never see. Under
// `go test -cover`, TestMain builds the binary with -cover so that each run
// writes its counters to a GOCOVERDIR of our own; after the tests, those
// are merged (go tool covdata) with the test binary's into the coverage
// line go test prints and into -coverprofile, and copied into
// -test.gocoverdir for whoever aggregates raw data (make cover).

// binCover is nil when the tests run without coverage.
type binCover struct {
	dir        string // GOCOVERDIR of the binaries the tests start
	testDir    string // -test.gocoverdir, where raw data is kept
	profile    string // -test.coverprofile
	stdout     *os.File
	line       chan string // the test binary's coverage line, held back
	copierDone chan struct{}
}

// coverPkgs is what the binary's coverage build instruments: the whole
// module, so a -coverpkg run sees what the e2e tests exercise everywhere.
const coverPkgs = "github.com/agentrelay/agentrelay/..."

func startCover() *binCover {
	if testing.CoverMode() == "" {
		return nil
	}
	dir, err := os.MkdirTemp("", "relaycover")
	if err != nil {
		panic(err)
	}
	c := &binCover{dir: dir, line: make(chan string, 1)}
	if f := flag.Lookup("test.gocoverdir"); f != nil {
		c.testDir = f.Value.String()
	}
	if f := flag.Lookup("test.coverprofile"); f != nil {
		c.profile = f.Value.String()
	}
	os.Setenv("GOCOVERDIR", dir)
	return c
}

// buildArgs are the extra `go build` flags for the binary.
func (c *binCover) buildArgs() []string {
	if c == nil {
		return nil
	}
	return []string{"-cover", "-covermode=" + testing.CoverMode(), "-coverpkg=" + coverPkgs}
}

// run runs the tests with stdout passed through, except the coverage line,
// which is replaced by the merged figure.
func (c *binCover) run(m *testing.M) int {
	if c == nil {
		return m.Run()
	}
	r, w, err := os.Pipe()
	if err != nil {
		panic(err)
	}
	c.stdout, os.Stdout = os.Stdout, w
	c.copierDone = make(chan struct{})
	go func() {
		defer close(c.copierDone)
		br := bufio.NewReader(r)
		for {
			l, err := br.ReadString('\n')
			if strings.HasPrefix(l, "coverage: ") {
				c.line <- l
			} else {
				io.WriteString(c.stdout, l)
			}
			if err != nil {
				return
			}
		}
	}()
	code := m.Run()
	os.Stdout = c.stdout
	w.Close()
	<-c.copierDone
	var line string
	select {
	case line = <-c.line:
	default:
	}
	if err := c.merge(line); err != nil {
		fmt.Fprintf(os.Stderr, "merging the relay binary's counters failed (%v)\n", err)
		fmt.Print(line)
	}
	os.RemoveAll(c.dir)
	return code
}

// merge combines the test binary's counters with the binary's runs, for the
// packages the test binary reports on.
func (c *binCover) merge(line string) error {
	if line == "" {
		return fmt.Errorf("the test binary printed no coverage line")
	}
	ownDir := filepath.Join(c.dir, "own")
	all := filepath.Join(c.dir, "all")
	os.MkdirAll(ownDir, 0o700)
	os.MkdirAll(all, 0o700)
	if err := coverage.WriteMetaDir(ownDir); err != nil {
		return err
	}
	// The test binary's counters: the files with its meta-data hash that
	// it wrote to -test.gocoverdir (none if nothing of it ran).
	own, _ := os.ReadDir(ownDir)
	if len(own) != 1 {
		return fmt.Errorf("%d meta-data files from WriteMetaDir", len(own))
	}
	meta := own[0].Name()
	link(filepath.Join(ownDir, meta), filepath.Join(all, meta))
	if c.testDir != "" {
		ents, _ := os.ReadDir(c.testDir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "covcounters."+strings.TrimPrefix(meta, "covmeta.")+".") {
				link(filepath.Join(c.testDir, e.Name()), filepath.Join(all, e.Name()))
			}
		}
	}
	children, _ := os.ReadDir(c.dir)
	for _, e := range children {
		if n := e.Name(); strings.HasPrefix(n, "cov") {
			link(filepath.Join(c.dir, n), filepath.Join(all, n))
			if c.testDir != "" {
				link(filepath.Join(c.dir, n), filepath.Join(c.testDir, n))
			}
		}
	}
	pkgs, err := goTool("covdata", "pkglist", "-i="+ownDir)
	if err != nil {
		return err
	}
	pkgList := strings.Join(strings.Fields(pkgs), ",")
	merged := filepath.Join(c.dir, "merged.out")
	if _, err := goTool("covdata", "textfmt", "-i="+all, "-pkg="+pkgList, "-o="+merged); err != nil {
		return err
	}
	// The total as go tool cover reports it for the merged profile.
	fn, err := goTool("cover", "-func="+merged)
	if err != nil {
		return err
	}
	var pct float64
	if i := strings.LastIndex(fn, "total:"); i < 0 {
		return fmt.Errorf("no total in go tool cover -func output")
	} else if _, err := fmt.Sscanf(strings.Join(strings.Fields(fn[i:]), " "), "total: (statements) %f%%", &pct); err != nil {
		return fmt.Errorf("go tool cover -func total: %v", err)
	}
	rest := ""
	if i := strings.Index(line, "of statements"); i >= 0 {
		rest = line[i+len("of statements"):]
	}
	fmt.Printf("coverage: %.1f%% of statements%s", pct, rest)
	if c.profile != "" {
		prof, err := os.ReadFile(merged)
		if err != nil {
			return err
		}
		return os.WriteFile(c.profile, prof, 0o644)
	}
	return nil
}

func link(from, to string) {
	if os.Link(from, to) == nil {
		return
	}
	if b, err := os.ReadFile(from); err == nil {
		os.WriteFile(to, b, 0o644)
	}
}

func goTool(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	cmd := exec.Command("go", append([]string{"tool"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go tool %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), nil
}
