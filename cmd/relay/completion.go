//go:build linux

package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/template"
)

const completionHelp = `Usage: relay completion bash|zsh

Print a script that makes the shell complete relay's subcommands, flags and
flag values (--guest kinds, --rlimit resources, socket paths, and the
command after 'relay exec --').

Flags:
  -h, --help   print this help

Examples:
  source <(relay completion bash)                          # this bash session
  relay completion bash > /etc/bash_completion.d/relay     # every bash session
  source <(relay completion zsh)                           # zsh, after compinit
  relay completion zsh > "${fpath[1]}/_relay"              # zsh, from fpath
`

// A compFlag is one flag as completion knows it: its spellings and what
// its value is (empty for a boolean flag).
type compFlag struct {
	names  []string
	value  string // "file", "dir", "guest", "rlimit", "word"
	help   string
	repeat bool // may be given more than once
}

// completionSpec lists each subcommand's flags. TestCompletionFlagsExist
// checks every one against the subcommand's --help.
var completionSpec = []struct {
	cmd   string
	flags []compFlag
}{
	{"serve", []compFlag{
		{[]string{"--socket"}, "file", "the clients' Unix socket", false},
		{[]string{"--guest"}, "guest", "the guest console", false},
		{[]string{"--exec-log"}, "dir", "directory for exec.log", false},
		{[]string{"--ready-timeout"}, "word", "how long to wait for core.ready", false},
		{[]string{"--debug-addr"}, "word", "loopback address for pprof, counters and metrics", false},
		{[]string{"--log-format"}, "word", "text or json", false},
		{[]string{"--allow-uid"}, "word", "a peer uid allowed to connect", false},
		{[]string{"--accept-wait"}, "word", "how long a connection waits for a slot", false},
		{[]string{"--client-buffer"}, "word", "bound of each client's output buffer", false},
		{[]string{"--output-budget"}, "word", "bound of all clients' output buffers", false},
		{[]string{"--quarantine-timeout"}, "word", "how long a departed client's sessions stay quarantined", false},
		{[]string{"--handshake"}, "word", "auto, 0.4 or 0.5", false},
		{[]string{"-h", "--help"}, "", "print help", false},
	}},
	{"exec", []compFlag{
		{[]string{"--socket"}, "file", "the relay's socket", false},
		{[]string{"-t", "--tty"}, "", "run under a pseudo-terminal", false},
		{[]string{"-i", "--interactive"}, "", "accepted; stdin is forwarded anyway", false},
		{[]string{"-n", "--no-stdin"}, "", "give the command an empty stdin", false},
		{[]string{"-e", "--env"}, "word", "set NAME=VALUE, or pass NAME's local value", true},
		{[]string{"-w", "--workdir"}, "word", "working directory in the guest", false},
		{[]string{"-u", "--user"}, "word", "run as USER or USER:GROUP", false},
		{[]string{"--rlimit"}, "rlimit", "resource limit RES=SOFT:HARD", true},
		{[]string{"--timeout"}, "word", "SIGTERM at this duration, exit 124", false},
		{[]string{"--kill-after"}, "word", "SIGKILL this long after the timeout's SIGTERM", false},
		{[]string{"-h", "--help"}, "", "print help", false},
	}},
	{"host", []compFlag{
		{[]string{"--control"}, "file", "the control API's Unix socket", false},
		{[]string{"--loops"}, "word", "event loops serving the sandboxes", false},
		{[]string{"--state"}, "file", "the state file", false},
		{[]string{"--max-sandboxes"}, "word", "refuse more sandboxes than this", false},
		{[]string{"--memory-budget"}, "word", "bound of all sandboxes' client buffers' growth", false},
		{[]string{"--debug-addr"}, "word", "loopback address for pprof, counters and metrics", false},
		{[]string{"--log-format"}, "word", "text or json", false},
		{[]string{"-h", "--help"}, "", "print help", false},
	}},
	{"sandbox", []compFlag{
		{[]string{"--control"}, "file", "the host daemon's control socket", false},
		{[]string{"--guest"}, "guest", "add: the guest console", false},
		{[]string{"--socket"}, "file", "add: the sandbox's client socket", false},
		{[]string{"--exec-log"}, "dir", "add: directory for exec.log", false},
		{[]string{"--handshake"}, "word", "add: auto, 0.4 or 0.5", false},
		{[]string{"--ready-timeout"}, "word", "add: how long to wait for core.ready", false},
		{[]string{"--json"}, "", "ls: print JSON", false},
		{[]string{"-h", "--help"}, "", "print help", false},
	}},
	{"guest", []compFlag{
		{[]string{"--listen"}, "file", "the console socket to create", false},
		{[]string{"-h", "--help"}, "", "print help", false},
	}},
	{"stats", []compFlag{
		{[]string{"--debug-addr"}, "word", "the relay's --debug-addr", false},
		{[]string{"-h", "--help"}, "", "print help", false},
	}},
	{"version", []compFlag{{[]string{"-h", "--help"}, "", "print help", false}}},
	{"completion", []compFlag{{[]string{"-h", "--help"}, "", "print help", false}}},
	{"help", nil},
}

func completionCmd(args []string) int {
	fs := flag.NewFlagSet("completion", flag.ContinueOnError)
	if code := parse(fs, "completion", completionHelp, args); code >= 0 {
		return code
	}
	if fs.NArg() != 1 {
		return usageError("completion", "want one shell: bash or zsh")
	}
	var t *template.Template
	switch fs.Arg(0) {
	case "bash":
		t = bashTemplate
	case "zsh":
		t = zshTemplate
	default:
		return usageError("completion", "unsupported shell %q (bash or zsh)", fs.Arg(0))
	}
	if err := writeCompletion(os.Stdout, t); err != nil {
		fmt.Fprintf(os.Stderr, "relay completion: %v\n", err)
		return exitFailure
	}
	return 0
}

func writeCompletion(w io.Writer, t *template.Template) error {
	var data struct {
		Commands []string
		Guests   string
		Rlimits  string
		Cmds     []compCmd
	}
	for _, c := range commands {
		data.Commands = append(data.Commands, c.name)
	}
	data.Guests = "unix: vsock: echo builtin"
	data.Rlimits = strings.Join(rlimitNames, " ")
	for _, s := range completionSpec {
		cc := compCmd{Name: s.cmd}
		for _, f := range s.flags {
			cc.Flags = append(cc.Flags, f.names...)
			if f.value != "" {
				cc.Values = append(cc.Values, compValue{Names: f.names, Kind: f.value})
			}
			cc.Zsh = append(cc.Zsh, zshSpec(f))
		}
		data.Cmds = append(data.Cmds, cc)
	}
	return t.Execute(w, data)
}

type compCmd struct {
	Name   string
	Flags  []string
	Values []compValue
	Zsh    []string
}

type compValue struct {
	Names []string
	Kind  string
}

// zshSpec is f as an _arguments spec: "(-t --tty)"{-t,--tty}"[help]", or
// "*"{-e,--env}"[help]:value: " for a flag that repeats.
func zshSpec(f compFlag) string {
	action := map[string]string{
		"":       "",
		"file":   ":path:_files",
		"dir":    ":directory:_files -/",
		"guest":  ":guest:(unix\\: vsock\\: echo builtin)",
		"rlimit": ":limit:_relay_rlimits",
		"word":   ":value: ",
	}[f.value]
	help := strings.NewReplacer("'", "'\\''", "[", "\\[", "]", "\\]").Replace(f.help)
	prefix := ""
	switch {
	case f.repeat:
		prefix = "'*'"
	case len(f.names) > 1:
		prefix = "'(" + strings.Join(f.names, " ") + ")'"
	}
	names := f.names[0]
	if len(f.names) > 1 {
		names = "{" + strings.Join(f.names, ",") + "}"
	}
	return fmt.Sprintf("%s%s'[%s]%s'", prefix, names, help, action)
}

var funcs = template.FuncMap{"join": strings.Join}

var bashTemplate = template.Must(template.New("bash").Funcs(funcs).Parse(`# bash completion for relay, from 'relay completion bash'.
# Load it with: source <(relay completion bash)

_relay() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local cmd=serve start=1
    # bash splits --flag=value at the "=".
    if [[ $cur == = ]]; then
        cur=
    elif [[ $prev == = ]] && ((COMP_CWORD > 1)); then
        prev=${COMP_WORDS[COMP_CWORD-2]}
    fi
    if ((COMP_CWORD == 1)); then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--version $(_relay_flags serve)" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "{{join .Commands " "}}" -- "$cur"))
        fi
        return
    fi
    if [[ ${COMP_WORDS[1]} != -* ]]; then
        cmd=${COMP_WORDS[1]} start=2
    fi
    case $cmd in
    help)
        ((COMP_CWORD == 2)) && COMPREPLY=($(compgen -W "{{join .Commands " "}}" -- "$cur"))
        return ;;
    sandbox)
        if ((COMP_CWORD == 2)) && [[ $cur != -* ]]; then
            COMPREPLY=($(compgen -W "add rm ls" -- "$cur"))
            return
        fi ;;
    completion)
        ((COMP_CWORD == 2)) && [[ $cur != -* ]] && COMPREPLY=($(compgen -W "bash zsh" -- "$cur"))
        [[ $cur == -* ]] && COMPREPLY=($(compgen -W "$(_relay_flags completion)" -- "$cur"))
        return ;;
    esac
    # bash splits "unix:PATH" at the ":" too: the path of a --guest.
    if [[ $cmd == @(serve|sandbox) ]] && ((COMP_CWORD > 3)) && [[ ${COMP_WORDS[COMP_CWORD-3]} == --guest ]] &&
        [[ $prev == : && ${COMP_WORDS[COMP_CWORD-2]} == @(unix|vsock) ]]; then
        COMPREPLY=($(compgen -f -- "$cur"))
        return
    fi
    if [[ $cmd == @(serve|sandbox) && $cur == : && $prev == @(unix|vsock) ]]; then
        COMPREPLY=($(compgen -f -- ""))
        return
    fi
    # A flag's value.
    case $cmd:$prev in
{{- range .Cmds}}{{$c := .Name}}{{range .Values}}
    {{range $i, $n := .Names}}{{if $i}}|{{end}}{{$c}}:{{$n}}{{end}})
        {{if eq .Kind "file"}}COMPREPLY=($(compgen -f -- "$cur")){{else if eq .Kind "dir"}}COMPREPLY=($(compgen -d -- "$cur")){{else if eq .Kind "guest"}}compopt -o nospace 2>/dev/null; COMPREPLY=($(compgen -W "{{$.Guests}}" -- "$cur")){{else if eq .Kind "rlimit"}}compopt -o nospace 2>/dev/null; COMPREPLY=($(compgen -W "{{$.Rlimits}}" -S = -- "$cur")){{else}}COMPREPLY=(){{end}}
        return ;;
{{- end}}{{end}}
    esac
    if [[ $cmd == exec ]]; then
        # After '--' or the first operand: the command, then its arguments.
        local i w
        for ((i = start; i < COMP_CWORD; i++)); do
            w=${COMP_WORDS[i]}
            if [[ $w == -- || $w != -* ]]; then
                [[ $w == -- ]] && ((i++))
                if ((i == COMP_CWORD)); then
                    COMPREPLY=($(compgen -c -- "$cur"))
                else
                    COMPREPLY=($(compgen -f -- "$cur"))
                fi
                return
            fi
            case " $(_relay_values exec) " in *" $w "*) ((i++)) ;; esac
        done
    fi
    COMPREPLY=($(compgen -W "$(_relay_flags "$cmd")" -- "$cur"))
}

# _relay_flags CMD: the flags of a subcommand.
_relay_flags() {
    case $1 in
{{- range .Cmds}}
    {{.Name}}) echo "{{join .Flags " "}}" ;;
{{- end}}
    esac
}

# _relay_values CMD: the flags of a subcommand that take a value.
_relay_values() {
    case $1 in
{{- range .Cmds}}
    {{.Name}}) echo "{{range .Values}}{{join .Names " "}} {{end}}" ;;
{{- end}}
    esac
}

complete -F _relay relay
`))

var zshTemplate = template.Must(template.New("zsh").Funcs(funcs).Parse(`#compdef relay
# zsh completion for relay, from 'relay completion zsh'.
# Load it with 'source <(relay completion zsh)' after compinit, or save it
# as _relay in a directory of $fpath.

_relay_rlimits() {
    compset -P '*='  && return
    local -a res=({{.Rlimits}})
    compadd -S = -q -a res
}

_relay() {
    local curcontext=$curcontext state line ret=1
    local -a commands=(
{{- range .Commands}}
        {{.}}
{{- end}}
    )
    if ((CURRENT == 2)) && [[ $words[2] != -* ]]; then
        _describe -t commands 'relay command' commands && ret=0
        return ret
    fi
    local cmd=serve
    if [[ $words[2] != -* ]]; then
        cmd=$words[2]
        shift words
        ((CURRENT--))
    fi
    case $cmd in
{{- range .Cmds}}
    {{.Name}})
        _arguments -s -S \
{{- range .Zsh}}
            {{.}} \
{{- end}}
{{- if eq .Name "exec"}}
            '(-):command:_command_names -e' \
            '*::arguments:_normal' && ret=0
{{- else if eq .Name "completion"}}
            ':shell:(bash zsh)' && ret=0
{{- else if eq .Name "guest"}}
            ':guest:(echo builtin)' && ret=0
{{- else if eq .Name "sandbox"}}
            ':action:(add rm ls)' \
            '*:name: ' && ret=0
{{- else if eq .Name "help"}}
            ':command:({{join $.Commands " "}})' && ret=0
{{- else}}
            && ret=0
{{- end}}
        ;;
{{- end}}
    esac
    return ret
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _relay "$@"
else
    compdef _relay relay
fi
`))
