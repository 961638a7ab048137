#!/usr/bin/env bash
# Every property-based test (the unit test files that use fast-check) under ROUNDS different seeds.
#
#   scripts/soak-fuzz.sh [ROUNDS] [SEED]     default 5 rounds, first seed from the clock
#
# Round r runs with FC_SEED=SEED+r (test/support/fc-seed.ts; CI uses one fixed seed, .ci/run) and
# FC_NUM_RUNS (default 300) runs per property that sets no count of its own. Prints each seed; a failure
# names the seed to replay: FC_SEED=<seed> npx vitest run --project unit <files>. No root needed.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-5}"
seed="${2:-$(( $(date +%s) % 1000000 ))}"
runs="${FC_NUM_RUNS:-300}"
mapfile -t files < <(grep -rlE "from 'fast-check'" test --include='*.test.ts' | grep -v '^test/e2e/' | sort)
log="$(mktemp -t qg-soak-fuzz-XXXXXX.log)"
echo "# soak-fuzz: ${rounds} rounds from seed ${seed}, ${runs} runs per property, ${#files[@]} files; log ${log}"

for r in $(seq 1 "$rounds"); do
  s=$(( seed + r ))
  start=$(date +%s)
  if ! FC_SEED="$s" FC_NUM_RUNS="$runs" npx vitest run --project unit "${files[@]}" >>"$log" 2>&1; then
    echo "# fuzz seed ${s} FAILED (see ${log}); replay: FC_SEED=${s} FC_NUM_RUNS=${runs} npx vitest run --project unit ${files[*]}"
    exit 1
  fi
  echo "# fuzz seed ${s}: ok in $(( $(date +%s) - start )) s"
done
echo "# soak-fuzz passed"
