// Command charts draws PNG charts from the output of the relay benchmarks
// (go test -bench Relay ./bench), one set per path to the guest (the
// relays' in-process echo guest, and an external echo guest process on
// unix:, files suffixed -unix): round-trip latency percentiles per
// implementation, stream throughput by frame size, fan-in throughput and
// the targets' cost per frame, the implementations side by side. It also
// writes targets.md, the socket-guest path's acceptance table (each relay
// as a ratio of its forwarder floor). Every value is the median over the
// runs in the file.
//
//	charts -in out/bench.txt -out out
package main
