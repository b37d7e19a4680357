// Command relay is the agent relay for microVM sandbox hosts: it multiplexes
// up to 16 clients on a Unix socket onto the byte stream of a guest's console.
//
//	relay [serve] --socket PATH --guest SPEC [--exec-log DIR]
//	      [--ready-timeout DUR] [--debug-addr ADDR]
//	relay exec --socket PATH [-t] [-e K=V]… [-w DIR] -- CMD [ARGS…]
//	relay stats --debug-addr ADDR
//
// SPEC is unix:PATH (a console on a listening Unix socket, QEMU style),
// vsock:PATH:PORT (Firecracker / Cloud Hypervisor hybrid vsock), echo (an
// in-process guest that reflects every frame, for benchmarks) or builtin (an
// in-process stand-in for the guest agent that runs commands as host
// processes: no isolation).
package main
