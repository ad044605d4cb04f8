#!/usr/bin/env bash
# Four nights of the replayed H100 trace (no GPU needed), then the gate: a verdict needs at least
# three earlier runs. Writes runs under ./runs/train-bench and nightly.html here.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
for i in 1 2 3 4; do
    RUNS=${RUNS:-runs/train-bench} COLLECTOR=nvml-replay STEPS=${STEPS:-30} \
        bash "$HERE/nightly-energy.sh" || [ $? -eq 1 ]   # exit 1: a regression (still a result)
done
wattprof nightly "${RUNS:-runs/train-bench}" -o nightly.html
