// Package bench holds the benchmark suite that compares, in one run, the
// reactor relay (bin/relay), the goroutine-per-connection
// baseline (bin/relay-baseline) and the physical floor, on two paths to
// the guest:
//
//   - in process: the relays run their own echo guest (--guest echo); the
//     floor is a bare Unix-socket echo with no relay in between;
//   - through a socket, as deployments reach a VMM's console: the relays
//     dial an external echo guest process (--guest unix:, ServeEchoGuest);
//     the floor is a minimal C epoll forwarder (csrc/fwd.c) between the
//     same clients and the same echo process, byte-level for one client
//     and frame-aware (routing by id range) for fan-in.
//
// Every target is a separate process driven by the same raw-socket client
// code (Conn, Pipe), so the client's own cost is the same for all of them,
// and every target is measured from the outside: CPU time from
// /proc/PID/stat, allocations from the relay's expvar memstats, and, where
// BPF is available, system calls and context switches counted in the kernel
// by package kcount.
//
// The workloads are one table (Workloads) run against every target by
// BenchmarkRelay, named Relay/<workload>/impl=<target> (the socket path's
// workloads under Relay/guest=unix/) so that `benchstat -col /impl` puts
// the targets side by side. Plain `go test`
// runs only unit tests and a smoke run of each workload; the benchmarks run
// with -bench (see scripts/bench.sh and bench/RESULTS.md).
package bench
