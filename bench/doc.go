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
//
// BenchmarkHost measures a host daemon (`bin/relay host`, issue 12) through
// its HTTP/JSON control API only (Control: net/http over the Unix socket),
// so that it links none of the daemon's code. Each scenario starts its own
// daemon, and where it compares, lone `relay serve` processes, in front of
// one many-guest echo process (ServeEchoGuests: N unix: echo guests on
// goroutines, a buffer only while a connection has bytes to echo) that
// serves both sides alike:
//
//   - idle/sandboxes=1000: RSS per idle sandbox = (VmRSS 1 s after 1,000
//     PUTs - VmRSS of the empty daemon, also 1 s after start) / 1,000, in
//     KiB, with no forced GC; threads and descriptors then;
//   - rt/neighbours=999/size=64: the 64 B round trip (p50, p99, p99.9) of
//     one sandbox among 1,000 against a lone relay on a guest of the same
//     process, in alternating blocks;
//   - stream/sandboxes=64/size=64K: 64 sandboxes each streaming 64 KiB
//     frames through one client at once, against 64 lone relays side by
//     side, alternating: aggregate MB/s, total RSS and PSS (clients
//     connected) and peak RSS of each side;
//   - isolation/flood=16x128: a sandbox's round trip idle and while
//     another sandbox on the same loop (--loops 1) is flooded by 16 clients
//     streaming 128 B frames through its echo guest; p99-ratio is flooded
//     p99 / idle p99; the same with two lone relays shows what the
//     machine's CPUs alone make of the flood;
//   - churn/sandboxes=1000: 1,000 sandboxes added and removed, twice;
//     descriptors (/proc/PID/fd) and RSS after the first cycle against the
//     start (RSS read once within 5 % or after 5 s: the runtime returns
//     memory in the background), and the second cycle against the first;
//   - idle/sandboxes=10000 with RELAY_BENCH_HOST10K=1: RLIMIT_NOFILE is
//     raised (as root with CAP_SYS_RESOURCE, the hard limit up to
//     fs.nr_open) before the processes start, which inherit it; the echo
//     guests spread over more processes if it cannot be, and running out of
//     descriptors is reported with the limits, by the guests and for the
//     daemon, never as a hang (every request and read has a timeout).
//
// A two-sided scenario reports each side as its own sub-benchmark
// (impl=host, impl=serve), so that `benchstat -col /impl` compares them;
// scripts/bench-host.sh runs it in rounds and cmd/charts writes issue 12's
// table (targets-host.md).
package bench
