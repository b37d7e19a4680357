// Command charts draws PNG charts from the output of the relay benchmarks
// (go test -bench 'Relay|Host' ./bench), one set per path to the guest (the
// relays' in-process echo guest, and an external echo guest process on
// unix:, files suffixed -unix): round-trip latency percentiles per
// implementation, stream throughput by frame size, fan-in throughput and
// the targets' cost per frame, the implementations side by side. It also
// writes targets.md, the socket-guest path's acceptance table (each relay
// as a ratio of its forwarder floor). From BenchmarkHost results it writes
// targets-host.md, issue 12's table: the host daemon against lone relays
// and its absolute targets, each with its verdict. Every value is the
// median over the runs in the file.
//
//	charts -in out/bench.txt -out out
//	charts -in out/bench-host.txt -out out
package main
