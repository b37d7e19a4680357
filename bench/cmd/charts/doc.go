// Command charts draws PNG charts from the output of the relay benchmarks
// (go test -bench Relay ./bench): round-trip latency percentiles per
// implementation, stream throughput by frame size, fan-in throughput and
// the targets' cost per frame, the implementations side by side. Every
// value drawn is the median over the runs in the file.
//
//	charts -in out/bench.txt -out out
package main
