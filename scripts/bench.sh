#!/usr/bin/env bash
# bench.sh OUT COUNT: the benchmark suite (bench/) on both paths to the
# guest, in COUNT alternating rounds (each round runs every workload against
# every target once, so that drift on the machine spreads over all targets
# alike):
#   - in-process echo guest: the reactor relay and the goroutine baseline
#     with --guest echo, beside the bare-echo floor;
#   - external echo guest process on unix: (Relay/guest=unix/...): both
#     relays with --guest unix:, beside the C forwarders in front of the same
#     echo process (bench/csrc/fwd.c, compiled with $CC or cc; skipped
#     without one).
# Raw output goes to OUT/bench.txt, the benchstat comparison (one column per
# target, rows for both paths) to OUT/benchstat.txt and the terminal, PNG
# charts to OUT/*.png (OUT/*-unix.png for the socket path) and issue 8's
# acceptance table to OUT/targets.md and the terminal.
#
# BENCHTIME (default 1s) is each benchmark's -benchtime: 44 benchmarks at
# about 2x BENCHTIME each (go test's N ramp) make a round ~2 minutes on 2
# cores, so the default COUNT of 6 takes ~12 minutes; BENCHTIME=0.5s and
# COUNT 3 about 3 minutes. BENCH (default ^BenchmarkRelay$) narrows the run,
# e.g. BENCH='^BenchmarkRelay$/^guest=unix$' for the socket path alone.
set -euo pipefail

out=${1:-out}
count=${2:-6}
benchtime=${BENCHTIME:-1s}
pattern=${BENCH:-^BenchmarkRelay\$}
go=${GO:-go}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p "$out"
out=$(cd "$out" && pwd)

$go build -o bin/relay ./cmd/relay
$go build -o bin/relay-baseline ./cmd/relay-baseline
$go test -c -o "$out/bench.test" ./bench

raw="$out/bench.txt"
{
	echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) nproc=$(nproc) kernel=$(uname -r)"
	echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "# go: $($go version)  benchtime=$benchtime count=$count  relay GOMAXPROCS=${GOMAXPROCS:-default}  cc: $(${CC:-cc} --version 2>/dev/null | head -1 || echo none)"
	echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$raw"

start=$(date +%s)
failed=0
for i in $(seq 1 "$count"); do
	echo "== round $i/$count" >&2
	# From bench/, as go test would run it. A failed benchmark (a target
	# that lost a frame or hung) fails its round but not the rounds after:
	# its target is restarted, and the failure is reported at the end.
	if ! (cd bench && RELAY_BIN="$root/bin/relay" RELAY_BASELINE_BIN="$root/bin/relay-baseline" "$out/bench.test" \
		-test.run '^$' -test.bench "$pattern" -test.benchtime "$benchtime" \
		-test.count 1 -test.timeout 30m) | tee -a "$raw"; then
		failed=$((failed + 1))
	fi
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)  took $(( $(date +%s) - start ))s" >> "$raw"

echo >&2
if $go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -col /impl "$raw" > "$out/benchstat.txt"; then
	cat "$out/benchstat.txt"
else
	echo "benchstat unavailable (no module proxy?): raw results are in $raw" >&2
fi
$go run ./bench/cmd/charts -in "$raw" -out "$out"
if [ -f "$out/targets.md" ]; then
	echo
	echo "issue 8 targets, external echo guest on unix: (medians; $out/targets.md):"
	cat "$out/targets.md"
	# A shared machine's load moves these figures more than anything else.
	grep '^# load' "$raw"
fi
if [ "$failed" -gt 0 ]; then
	echo "bench: $failed of $count rounds had a failed benchmark:" >&2
	grep -- '--- FAIL' "$raw" | grep impl= >&2 || true
	exit 1
fi
