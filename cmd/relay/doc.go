// Command relay is the agent relay for microVM sandbox hosts: it multiplexes
// up to 16 clients on a Unix socket onto the byte stream of a guest's console.
//
//	relay [serve] [--socket PATH] --guest SPEC [--exec-log DIR]
//	      [--ready-timeout DUR] [--debug-addr ADDR]
//	relay exec [--socket PATH] [-t] [-n] [-e NAME[=VALUE]]… [-w DIR] [-u USER]
//	      [--rlimit RES=SOFT[:HARD]]… [--timeout DUR] [--] CMD [ARGS…]
//	relay host [--control PATH] [--loops N] [--state FILE] [--max-sandboxes N]
//	      [--memory-budget SIZE] [--debug-addr ADDR]
//	relay sandbox add NAME --guest SPEC --socket PATH [--exec-log DIR] | rm NAME | ls [--json]
//	relay guest --listen PATH echo|builtin
//	relay stats --debug-addr ADDR
//	relay version
//	relay completion bash|zsh
//	relay help [COMMAND]
//
// SPEC is unix:PATH (a console on a listening Unix socket, QEMU style),
// vsock:PATH:PORT (Firecracker / Cloud Hypervisor hybrid vsock), echo (an
// in-process guest that reflects every frame, for benchmarks) or builtin (an
// in-process stand-in for the guest agent that runs commands as host
// processes: no isolation). The socket defaults to $RELAY_SOCKET, else
// $XDG_RUNTIME_DIR/agentrelay/agent.sock, else /run/agentrelay/agent.sock.
//
// relay exec exits with the command's status, 128+N if signal N killed it,
// 124 when --timeout expired, 125 when the relay or the connection failed,
// 126 when the command could not be started, 127 when it was not found and
// 2 on a usage error.
//
// The binary builds for Linux only.
package main
