#!/usr/bin/env bash
# profile.sh OUT: CPU and allocation profiles of the reactor relay process
# under the stream workloads (64 B and 64 KiB frames) and the 16-client
# fan-in. For each, it starts bin/relay --guest echo with a
# debug endpoint, hands it to the benchmark binary (AGENTRELAY_BENCH_ATTACH)
# running that one workload for PROFTIME+10 s, and meanwhile fetches
# /debug/pprof/profile?seconds=PROFTIME and /debug/pprof/allocs (after forced GCs) before and
# after. Under OUT/profile/: NAME.cpu.pprof, NAME.allocs.pprof (cumulative),
# NAME.allocs.base.pprof, and `go tool pprof -top` summaries NAME.cpu.txt
# and NAME.allocs.txt (allocations made during the workload only). The
# relay runs with GODEBUG=memprofilerate=1 so that every allocation is in
# the profile, not one per 512 KiB: the reactor allocates too rarely for
# sampling to catch. The allocs/frame of NAME.bench.txt include what the
# profile endpoint itself allocates: take that figure from make bench.
#
# PROFGUEST=unix profiles the socket-guest path instead: the relay runs
# with --guest unix: to an external echo guest process (the benchmark
# binary as ServeEchoGuest), the workloads are those under guest=unix/, and
# the files are named NAME-unix.*.
set -euo pipefail

out=${1:-out}/profile
proftime=${PROFTIME:-10}
guest=${PROFGUEST:-echo}
case $guest in
echo) suffix= prefix= attach=reactor ;;
unix) suffix=-unix prefix='^guest=unix$/' attach=reactor@unix ;;
*) echo "PROFGUEST=$guest: want echo or unix" >&2; exit 2 ;;
esac
go=${GO:-go}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p "$out"
out=$(cd "$out" && pwd)

$go build -o bin/relay ./cmd/relay
$go build -o bin/relay-baseline ./cmd/relay-baseline
$go test -c -o "$out/bench.test" ./bench

tmp=$(mktemp -d /tmp/relayprof.XXXXXX)
relay_pid=
guest_pid=
cleanup() {
	if [ -n "$relay_pid" ]; then kill "$relay_pid" 2>/dev/null || true; fi
	if [ -n "$guest_pid" ]; then kill "$guest_pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

fetch() { curl -fsS --max-time $((proftime + 30)) -o "$2" "$1"; }

# The heap profile publishes what a GC cycle saw only at the next one: two
# forced cycles make it current.
fetch_allocs() {
	fetch "http://$1/debug/pprof/allocs?gc=1" "$2"
	fetch "http://$1/debug/pprof/allocs?gc=1" "$2"
}

# name, then the -bench pattern of one workload against the reactor, after
# ^BenchmarkRelay$/ and the path's prefix
profile() {
	local name=$1$suffix pattern="^BenchmarkRelay\$/$prefix$2"
	echo "== $name" >&2
	local sock="$tmp/$name.sock" log="$out/$name.relay.log" spec=echo
	if [ "$guest" = unix ]; then
		spec="unix:$tmp/$name-guest.sock"
		AGENTRELAY_BENCH_GUEST="$tmp/$name-guest.sock" "$out/bench.test" 2> "$out/$name.guest.log" &
		guest_pid=$!
	fi
	GODEBUG=memprofilerate=1 "$root/bin/relay" serve --socket "$sock" --guest "$spec" \
		--debug-addr 127.0.0.1:0 2> "$log" &
	relay_pid=$!
	local addr=
	for _ in $(seq 100); do
		addr=$(sed -n 's/.*msg="debug endpoint" addr=\([0-9.:]*\).*/\1/p' "$log" | head -1)
		[ -n "$addr" ] && [ -S "$sock" ] && break
		sleep 0.1
	done
	if [ -z "$addr" ]; then
		echo "relay did not start:" >&2
		cat "$log" >&2
		exit 1
	fi
	(cd bench && AGENTRELAY_BENCH_ATTACH="$attach=$sock,$addr,$relay_pid" "$out/bench.test" \
		-test.run '^$' -test.bench "$pattern" -test.benchtime "$((proftime + 10))s" \
		-test.count 1 -test.timeout 10m) > "$out/$name.bench.txt" &
	local bench_pid=$!
	# Let go test's first short runs pass; profile the long one.
	sleep 4
	fetch_allocs "$addr" "$out/$name.allocs.base.pprof"
	fetch "http://$addr/debug/pprof/profile?seconds=$proftime" "$out/$name.cpu.pprof"
	fetch_allocs "$addr" "$out/$name.allocs.pprof"
	wait "$bench_pid"
	kill "$relay_pid"
	wait "$relay_pid" 2>/dev/null || true
	relay_pid=
	if [ -n "$guest_pid" ]; then
		kill "$guest_pid"
		wait "$guest_pid" 2>/dev/null || true
		guest_pid=
	fi
	$go tool pprof -top -nodecount=40 "$root/bin/relay" "$out/$name.cpu.pprof" > "$out/$name.cpu.txt" 2>/dev/null
	# What the profile endpoints allocate themselves is left out.
	$go tool pprof -top -nodecount=40 -sample_index=alloc_objects -ignore 'runtime/pprof|net/http' \
		-base "$out/$name.allocs.base.pprof" "$root/bin/relay" "$out/$name.allocs.pprof" > "$out/$name.allocs.txt" 2>/dev/null
	grep '^Benchmark' "$out/$name.bench.txt" >&2 || cat "$out/$name.bench.txt" >&2
	echo "-- CPU ($out/$name.cpu.txt):" >&2
	head -n 22 "$out/$name.cpu.txt" >&2
	echo "-- allocations during the workload ($out/$name.allocs.txt):" >&2
	head -n 15 "$out/$name.allocs.txt" >&2
}

profile stream64 '^stream$/^size=64$/^impl=reactor$'
profile stream64K '^stream$/^size=64K$/^impl=reactor$'
profile fanin16 '^fanin$/^clients=16$/^size=128$/^impl=reactor$'
