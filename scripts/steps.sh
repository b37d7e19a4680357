#!/usr/bin/env bash
# Runs `make STEP` for each step in turn, printing how long each took, and a
# summary at the end; stops at the first step that fails.
set -uo pipefail
make=${MAKE:-make}
declare -a names times
total=$(date +%s)
for step in "$@"; do
	echo "==> $step" >&2
	start=$(date +%s)
	$make --no-print-directory "$step"
	rc=$?
	names+=("$step")
	times+=($(( $(date +%s) - start )))
	echo "<== $step: ${times[-1]}s (exit $rc)" >&2
	if [ $rc -ne 0 ]; then
		break
	fi
done
echo "step durations:" >&2
for i in "${!names[@]}"; do
	printf '  %-14s %5ss\n' "${names[$i]}" "${times[$i]}" >&2
done
printf '  %-14s %5ss\n' total $(( $(date +%s) - total )) >&2
exit $rc
