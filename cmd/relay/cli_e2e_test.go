package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/agentrelay/agentrelay/internal/syncbuf"
)

// runBin runs the binary with args and returns stdout, stderr and the
// exit code.
func runBin(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatal(err)
		}
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// TestHelp: relay --help, -h and help list every subcommand on stdout and
// exit 0; help COMMAND is COMMAND --help; an unknown command is a usage
// error.
func TestHelp(t *testing.T) {
	subcommands := []string{"serve", "exec", "host", "sandbox", "guest", "stats", "version", "completion", "help"}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		out, errOut, code := runBin(t, args...)
		if code != 0 || errOut != "" {
			t.Fatalf("%q: exit %d, stderr %q", args, code, errOut)
		}
		for _, c := range subcommands {
			if !regexp.MustCompile(`(?m)^  relay \[?` + c + `\b.* {2,}\S.*\S$`).MatchString(out) {
				t.Errorf("%q: no line for %s:\n%s", args, c, out)
			}
		}
	}
	for _, c := range []string{"exec", "host", "sandbox", "guest", "stats", "version", "completion"} {
		viaHelp, _, code1 := runBin(t, "help", c)
		direct, _, code2 := runBin(t, c, "--help")
		if code1 != 0 || code2 != 0 || viaHelp != direct || !strings.HasPrefix(direct, "Usage: relay "+c) {
			t.Errorf("help %s (exit %d) and %s --help (exit %d) differ or lack a usage line:\n%s", c, code1, c, code2, direct)
		}
	}
	_, errOut, code := runBin(t, "frobnicate")
	if code != 2 || !strings.Contains(errOut, `relay: unknown command "frobnicate"`) {
		t.Fatalf("unknown command: exit %d, %q", code, errOut)
	}
}

// TestSubcommandHelp: each subcommand's --help names its flags in --long
// form and gives examples; exec's documents the exit codes.
func TestSubcommandHelp(t *testing.T) {
	for cmd, flags := range map[string][]string{
		"exec": {"--socket", "--tty", "--interactive", "--no-stdin", "--env", "--workdir", "--user",
			"--rlimit", "--timeout", "--kill-after", "--help", "RELAY_SOCKET"},
		"stats":      {"--debug-addr", "--help"},
		"host":       {"--control", "--loops", "--state", "--max-sandboxes", "--memory-budget", "--debug-addr", "--help", "RELAY_HOST_CONTROL"},
		"guest":      {"--listen", "echo", "builtin", "--help"},
		"sandbox":    {"--control", "--guest", "--socket", "--exec-log", "--handshake", "--ready-timeout", "--json", "--help", "add", "rm", "ls"},
		"version":    {"--help", "relay --version"},
		"completion": {"--help", "bash", "zsh"},
	} {
		out, _, code := runBin(t, cmd, "--help")
		if code != 0 || !strings.Contains(out, "\nExamples:\n  ") {
			t.Errorf("%s --help: exit %d, no examples:\n%s", cmd, code, out)
		}
		for _, f := range flags {
			if !strings.Contains(out, f) {
				t.Errorf("%s --help lacks %s", cmd, f)
			}
		}
	}
	out, _, _ := runBin(t, "exec", "--help")
	for _, code := range []string{"128+N", "2 ", "124", "125", "126", "127"} {
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(code) + ` *\S`).MatchString(out) {
			t.Errorf("exec --help does not document exit status %s", code)
		}
	}
}

// TestFlagsAloneMeanServe: without a subcommand, flags are serve's, as
// harnesses start the relay.
func TestFlagsAloneMeanServe(t *testing.T) {
	dir := privateDir(t)
	p := &proc{socket: filepath.Join(dir, "agent.sock"), stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "--socket", p.socket, "--guest", "echo")
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	p.waitSocket(t)
}

// TestVersion: relay version and relay --version print the module path
// and version, the VCS revision and the Go version from the build info.
func TestVersion(t *testing.T) {
	out, errOut, code := runBin(t, "version")
	out2, _, code2 := runBin(t, "--version")
	if code != 0 || code2 != 0 || out != out2 || errOut != "" {
		t.Fatalf("version: exit %d/%d, outputs differ or stderr %q:\n%s\n%s", code, code2, errOut, out, out2)
	}
	goVersion, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		t.Fatal(err)
	}
	// (devel) from a checkout without VCS stamping, else a pseudo-version.
	if !regexp.MustCompile(`^relay (\(devel\)|v\d+\.\d+\.\d+\S*)\n`).MatchString(out) {
		t.Errorf("version has no version line:\n%s", out)
	}
	for _, want := range []string{
		"module    github.com/agentrelay/agentrelay\n",
		"go        " + strings.TrimSpace(string(goVersion)) + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n",
		"revision  ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("version lacks %q:\n%s", want, out)
		}
	}

	// With VCS stamping, the revision is the checkout's. Go stamps only in
	// a checkout whose .git is a directory (not a git worktree).
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(root, ".git")); err != nil || !fi.IsDir() {
		t.Skip("not a plain git checkout: Go does not stamp VCS information here")
	}
	head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skip("git:", err)
	}
	stamped := filepath.Join(t.TempDir(), "relay")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", stamped, ".")
	build.Env = append(os.Environ(), "GOFLAGS=") // GOFLAGS=-buildvcs=false would win over the flag
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	v, err := exec.Command(stamped, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "revision  " + strings.TrimSpace(string(head)); !strings.Contains(string(v), want) {
		t.Fatalf("stamped version lacks %q:\n%s", want, v)
	}
}

// TestStatsSaysWhatWentWrong: relay stats checks the HTTP status and the
// content type, and names the problem, rather than decoding a 404 page as
// JSON.
func TestStatsSaysWhatWentWrong(t *testing.T) {
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte("<html>a web server</html>"))
	}))
	defer html.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedAddr := closed.Listener.Addr().String()
	closed.Close()

	for _, tc := range []struct{ addr, want string }{
		{notFound.Listener.Addr().String(), "/stats answered 404 Not Found, not the relay's counters: is " + notFound.Listener.Addr().String() + " a relay's --debug-addr?"},
		{html.Listener.Addr().String(), "/stats answered text/html, not the relay's counters (JSON)"},
		{closedAddr, "relay stats: cannot reach the relay's debug endpoint at " + closedAddr + ": connection refused"},
	} {
		out, errOut, code := runBin(t, "stats", "--debug-addr", tc.addr)
		if code != 1 || out != "" || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "invalid character") {
			t.Errorf("stats %s: exit %d, stdout %q, stderr %q; want 1 and %q", tc.addr, code, out, errOut, tc.want)
		}
	}
	if _, errOut, code := runBin(t, "stats"); code != 2 || !strings.Contains(errOut, "--debug-addr is required") {
		t.Errorf("stats without --debug-addr: exit %d %q", code, errOut)
	}
}

// TestCompletionBash: bash can source the script, which registers relay
// and completes subcommands, flags and flag values.
func TestCompletionBash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	script := filepath.Join(t.TempDir(), "relay.bash")
	out, _, code := runBin(t, "completion", "bash")
	if code != 0 || os.WriteFile(script, []byte(out), 0o644) != nil {
		t.Fatalf("completion bash: exit %d", code)
	}
	driver := `source "$1" || exit 1
complete -p relay
c() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _relay; echo "$*| ${COMPREPLY[*]}"; }
c relay ""
c relay st
c relay exec --t
c relay exec -
c relay serve --guest ""
c relay exec --rlimit nof
c relay exec -e FOO -- sh -c
c relay help e
c relay completion ""
c relay --socket /x --gu
c relay serve --guest unix : "$2/cons"
c relay sandbox ""
c relay sandbox add vm1 --gu
`
	consoles := t.TempDir()
	if err := os.WriteFile(filepath.Join(consoles, "console.sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", driver, "bash", script, consoles)
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, got)
	}
	want := []string{
		"complete -F _relay relay",
		"relay | serve exec host sandbox guest stats version completion help",
		"relay st| stats",
		"relay exec --t| --tty --timeout",
		"relay exec -| --socket -t --tty -i --interactive -n --no-stdin -e --env -w --workdir -u --user --rlimit --timeout --kill-after -h --help",
		"relay serve --guest | unix: vsock: echo builtin",
		"relay exec --rlimit nof| nofile=",
		"relay help e| exec",
		"relay completion | bash zsh",
		"relay --socket /x --gu| --guest",
		"relay serve --guest unix : " + consoles + "/cons| " + consoles + "/console.sock", // bash splits at ":"
		"relay sandbox | add rm ls",
		"relay sandbox add vm1 --gu| --guest",
	}
	for _, w := range want {
		if !strings.Contains(string(got), w+"\n") {
			t.Errorf("bash completion lacks %q:\n%s", w, got)
		}
	}
	// After -- comes the command's own words: files, not relay's flags.
	if strings.Contains(string(got), "relay exec -e FOO -- sh -c| -") {
		t.Errorf("completed relay's flags after the command:\n%s", got)
	}
}

// TestCompletionZsh: zsh loads the script, registers _relay, and completes
// subcommands and flags (driven through zpty, as a terminal would).
func TestCompletionZsh(t *testing.T) {
	if _, err := exec.LookPath("zsh"); err != nil {
		t.Skip("no zsh")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "_relay")
	out, _, code := runBin(t, "completion", "zsh")
	if code != 0 || os.WriteFile(script, []byte(out), 0o644) != nil {
		t.Fatalf("completion zsh: exit %d", code)
	}
	if out, err := exec.Command("zsh", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	// An interactive zsh on a pty: compinit, the script, then each line and
	// a TAB; compadd is wrapped to record what completion offers. Keys are
	// not typed ahead (completion skips work while input is pending): the
	// driver waits for the offers to stop growing, then clears the line
	// with ^U, a key rather than a signal that could interrupt a command.
	hits := filepath.Join(dir, "hits")
	driver := `zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z 'PS1=; bindkey -e; autoload -U compinit; compinit -u -d "$DIR/zcompdump"; source "$DIR/_relay"'
zpty -w z 'compadd() { builtin compadd -O __h "$@"; print -r -- ${(j: :)__h} >> "$DIR/hits"; builtin compadd "$@" }'
i=0
for line in "relay " "relay exec --t" "relay serve --guest " "relay exec --rlimit nof" ""; do
    i=$((i+1))
    zpty -w z "print -r -- MARK >> \$DIR/hits; print DO''NE$i"
    zpty -r z out "*DONE$i*" || exit 1
    [[ -z $line ]] && break
    zpty -n -w z "$line"$'\t'
    size=0 still=0
    for n in {1..400}; do
        sleep 0.025
        new=$(grep -v '^$' "$DIR/hits" | wc -c)
        if [[ $(grep -v '^$' "$DIR/hits" | tail -n 1) != MARK && $new == $size ]]; then
            (( ++still >= 4 )) && break
        else
            still=0
        fi
        size=$new
    done
    zpty -n -w z $'\x15'
done
zpty -d z
`
	cmd := exec.Command("zsh", "-f", "-c", driver)
	cmd.Env = append(os.Environ(), "DIR="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("zsh driver: %v\n%s", err, out)
	}
	b, err := os.ReadFile(hits)
	if err != nil {
		t.Fatal(err)
	}
	rounds := strings.Split(string(b), "MARK\n")[1:]
	rounds = rounds[:len(rounds)-1] // the last MARK only ends the fourth
	want := [][]string{
		{"serve", "exec", "host", "sandbox", "guest", "stats", "version", "completion", "help"},
		{"--tty", "--timeout"},
		{"unix:", "vsock:", "echo", "builtin"},
		{"nofile"},
	}
	if len(rounds) != len(want) {
		t.Fatalf("%d completion rounds, want %d:\n%s", len(rounds), len(want), b)
	}
	for i, w := range want {
		got := strings.Fields(rounds[i])
		for _, word := range w {
			if !contains(got, word) {
				t.Errorf("round %d: %q lacks %q", i, got, word)
			}
		}
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// TestCompletionFlagsExist: the completion scripts offer exactly the flags
// each subcommand's --help shows.
func TestCompletionFlagsExist(t *testing.T) {
	// A flag as a help text lists it: "  -name" from the flag package
	// (serve's help), "  -t, --tty" or "      --socket" from ours.
	listed := regexp.MustCompile(`(?m)^ {2}(?:-[a-z], | {4})?-{1,2}([a-z][a-z-]+)`)
	for _, s := range completionSpec {
		if s.cmd == "help" {
			continue
		}
		out, errOut, _ := runBin(t, s.cmd, "--help")
		help := out + errOut // serve's help is the flag package's, on stderr
		offered := map[string]bool{}
		for _, f := range s.flags {
			offered[f.names[len(f.names)-1]] = true
		}
		for _, m := range listed.FindAllStringSubmatch(help, -1) {
			if !offered["--"+m[1]] {
				t.Errorf("%s --help shows --%s, which completion does not offer (completionSpec)", s.cmd, m[1])
			}
		}
		for _, f := range s.flags {
			if f.names[len(f.names)-1] == "--help" {
				continue // the flag package's own, for every subcommand
			}
			for _, n := range f.names {
				// The flag package prints "-name"; ours print "--name".
				if !strings.Contains(help, n) && !strings.Contains(help, "  "+strings.TrimPrefix(n, "-")) {
					t.Errorf("completion offers %s %s, which its --help does not show", s.cmd, n)
				}
			}
		}
	}
}

// TestOtherGOOS: building for another system fails at once, naming the
// reason, instead of deep in a dependency (undefined: unix.EpollEvent).
func TestOtherGOOS(t *testing.T) {
	cmd := exec.Command("go", "build", "-o", os.DevNull, ".")
	cmd.Env = append(os.Environ(), "GOOS=darwin", "GOARCH=arm64", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("the build for darwin succeeded")
	}
	if !strings.Contains(string(out), "undefined: relay_builds_for_linux_only__set_GOOS_linux") || strings.Contains(string(out), "Epoll") {
		t.Fatalf("the build for darwin fails without saying why:\n%s", out)
	}
}
