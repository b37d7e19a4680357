#!/usr/bin/env bash
# Runs every fuzz target in the module for $1 (a go test -fuzztime value).
# go test -fuzz accepts one target per invocation, so targets are listed first.
set -euo pipefail
t=${1:-2s}
cd "$(dirname "$0")/.."
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    echo "fuzz $pkg $target ($t)"
    go test -run='^$' -fuzz="^${target}\$" -fuzztime="$t" "$pkg" >/tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; exit 1; }
    tail -n 1 /tmp/fuzz.$$.log
  done
done
rm -f /tmp/fuzz.$$.log
