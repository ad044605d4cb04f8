#!/usr/bin/env bash
# nightly-energy.sh: record the benchmark, export it, and gate on energy regressions.
# Run from cron (`15 2 * * * /opt/jobs/nightly-energy.sh`) or a CI schedule, from the repository root.
# Environment (all optional): RUNS (where runs are kept), COLLECTOR (e.g. nvml-replay without a GPU),
# STEPS (benchmark steps), PROM_TEXTFILE (node_exporter textfile; unset: no Prometheus export),
# CLOUDWATCH_NAMESPACE (unset: no CloudWatch export; needs the [aws] extra and credentials).
set -euo pipefail
RUNS=${RUNS:-/data/wattprof-runs/train-bench}
RUN=$RUNS/$(date +%Y%m%d-%H%M%S)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
HERE=$(cd "$(dirname "$0")" && pwd)

# 1. record (COLLECTOR=nvml-replay on a machine without a GPU)
wattprof record -q ${COLLECTOR:+-c "$COLLECTOR"} -t benchmark=train-bench -t commit="$COMMIT" \
    --out "$RUN" -- python "$HERE/bench.py" --steps "${STEPS:-200}"

# 2. export: Prometheus (node_exporter textfile collector) and/or CloudWatch
if [ -n "${PROM_TEXTFILE:-}" ]; then
    wattprof export prometheus "$RUN" --textfile "$PROM_TEXTFILE"
fi
if [ -n "${CLOUDWATCH_NAMESPACE:-}" ]; then
    wattprof export cloudwatch "$RUN" --namespace "$CLOUDWATCH_NAMESPACE"
fi

# 3. report and gate: the run's own HTML report (linked from the nightly page), then the latest run
#    against the median of the last 7 (5 % threshold, or the runs' own noise if larger)
wattprof report "$RUN" -o "$RUN/report.html"
status=0
wattprof nightly "$RUNS" --baseline median:7 --threshold 5 -o "$RUN/nightly.html" --fail-on-regression || status=$?
if [ "$status" -eq 3 ]; then   # the first night: nothing to compare yet, not a failure
    echo "nightly-energy: first run of this benchmark, nothing to compare yet"
    status=0
fi
exit "$status"
