#!/usr/bin/env bash
# bench/quic/perf-split.sh CASE [SECS] - run one case of run.sh and record `perf` on its two processes only
# (found by their command line), then print where their CPU went per binary (kernel, node/V8+libuv, JIT'ed JS,
# the QUIC stack's own library, libc) and the top symbols. Output in $WORK/perf-CASE.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
case_=$1; secs=${2:-4}
WORK=${WORK:-/tmp/qgq-run}; mkdir -p "$WORK"
case $case_ in lib) pat='lib-dgram.mjs (server|client)' ;; quinn) pat='quinn-dgram (server|client)' ;;
  ngtcp2) pat='ngtcp2-dgram (server|client)' ;; udp_node) pat='udp-node.mjs (server|client)' ;; *) echo "case?" >&2; exit 2 ;; esac
CASES=$case_ DUR=$((secs + 2)) WORK=$WORK NODE_OPTS="${NODE_OPTS:-} --perf-basic-prof-only-functions" bash "$here/run.sh" > "$WORK/perf-run.txt" 2>&1 &
runner=$!
sleep 3.5
pids=$(pgrep -f -- "$pat" | paste -sd, -)
perf record -q -F 999 -g -p "$pids" -o "$WORK/perf-$case_.data" -- sleep "$secs" 2>/dev/null || true
wait $runner || true
{
  tail -1 "$WORK/perf-run.txt"
  echo "-- by process and binary"
  perf report -i "$WORK/perf-$case_.data" --no-children --sort pid,dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -24
  echo "-- top symbols"
  perf report -i "$WORK/perf-$case_.data" --no-children --sort pid,dso,sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40
} | tee "$WORK/perf-$case_.txt"
