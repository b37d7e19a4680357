#!/usr/bin/env bash
# bench-host.sh OUT COUNT: issue 12's host daemon targets (BenchmarkHost in
# bench/) against `bin/relay host`, in COUNT rounds. Each round runs every
# scenario once, each with its own daemon and its own many-guest echo
# process (unix: echo guests, bench.ServeEchoGuests):
#   - 1,000 idle sandboxes: RSS per sandbox above the empty daemon, threads;
#   - the 64 B round trip of one sandbox among 999 idle ones against a lone
#     `relay serve` (alternating blocks);
#   - 64 sandboxes streaming 64 KiB frames against 64 lone relays: aggregate
#     throughput and total RSS;
#   - one sandbox flooded by 16 clients: another's p99 against its idle p99
#     (and the same for two lone relays, for what the machine alone does);
#   - 1,000 sandboxes added and removed, twice: descriptors and RSS.
# HOST10K=1 adds 10,000 idle sandboxes (a minute or more; RLIMIT_NOFILE is
# raised up to fs.nr_open, which needs root). RELAY_HOST_ARGS adds
# arguments to every `relay host`.
#
# Raw output goes to OUT/bench-host.txt, the benchstat comparison (host
# daemon beside lone relays) to OUT/benchstat-host.txt and the terminal,
# issue 12's table to OUT/targets-host.md and the terminal. A round takes
# about 40 s on 2 cores, so the default COUNT of 3 about 2 minutes.
set -euo pipefail

out=${1:-out}
count=${2:-3}
go=${GO:-go}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p "$out"
out=$(cd "$out" && pwd)

$go build -o bin/relay ./cmd/relay
$go test -c -o "$out/bench.test" ./bench
if [ "${HOST10K:-0}" = 1 ]; then
	export RELAY_BENCH_HOST10K=1
fi

raw="$out/bench-host.txt"
{
	echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) nproc=$(nproc) kernel=$(uname -r) RLIMIT_NOFILE=$(ulimit -Hn) fs.nr_open=$(cat /proc/sys/fs/nr_open)"
	echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "# go: $($go version)  count=$count  HOST10K=${HOST10K:-0}  RELAY_HOST_ARGS=${RELAY_HOST_ARGS:-}"
	echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$raw"

start=$(date +%s)
failed=0
for i in $(seq 1 "$count"); do
	echo "== host round $i/$count" >&2
	# From bench/, as go test would run it. Every scenario runs once per
	# round (-benchtime 1x); a failed one fails its round, not the next.
	if ! (cd bench && RELAY_BIN="$root/bin/relay" "$out/bench.test" \
		-test.run '^$' -test.bench '^BenchmarkHost$' -test.benchtime 1x \
		-test.count 1 -test.timeout 30m) | tee -a "$raw"; then
		failed=$((failed + 1))
	fi
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)  took $(( $(date +%s) - start ))s" >> "$raw"

echo >&2
if [ "$failed" -eq 0 ] && ! grep -q '^BenchmarkHost/' "$raw"; then
	# BenchmarkHost skips itself when bin/relay has no host command.
	echo "bench-host: no results: bin/relay has no host command? ($root/bin/relay help host)" >&2
	exit 0
fi
if $go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -col /impl "$raw" > "$out/benchstat-host.txt"; then
	cat "$out/benchstat-host.txt"
else
	echo "benchstat unavailable (no module proxy?): raw results are in $raw" >&2
fi
if grep -q '^BenchmarkHost/' "$raw"; then
	$go run ./bench/cmd/charts -in "$raw" -out "$out"
	echo
	echo "issue 12 targets, host daemon (medians of $count rounds; $out/targets-host.md):"
	cat "$out/targets-host.md"
	grep '^# load' "$raw"
fi
if [ "$failed" -gt 0 ]; then
	echo "bench-host: $failed of $count rounds had a failed scenario:" >&2
	grep -A3 -- '--- FAIL' "$raw" >&2 || true
	exit 1
fi
