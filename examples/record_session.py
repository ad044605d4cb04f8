"""Record a run from your own tool with the session layer that `wattprof record`, `profile()`
and the callbacks use: options in, a finalised run out (docs/recording.md).

Runs anywhere: with an NVIDIA GPU it measures it through NVML; without one it replays the real
H100 trace shipped with wattprof (`nvml-replay`).

    python examples/record_session.py [RUN_DIR]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from wattprof.collectors.base import create
from wattprof.options import RecordOptions
from wattprof.recording.session import RecordingSession

gpu = create("nvml").available()[0]
options = RecordOptions(out=Path(sys.argv[1]) if len(sys.argv) > 1 else None, name="session-example",
                        tags={"example": "session"}, collectors=("nvml",) if gpu else ("nvml-replay",),
                        interval_s=0.05)

with RecordingSession(options) as session:   # creates the run, opens the collectors, samples
    print(f"recording {session.run_id} into {session.run_dir}")
    time.sleep(2.0)                           # the work you measure

run = session.result.open()                   # finalised: status, compacted samples, summary.json
report = run.report(bottlenecks=False)
print(f"{run.status}: {report.energy_j:.1f} J over {report.duration_s:.1f} s, sampled every {run.interval_s} s")
