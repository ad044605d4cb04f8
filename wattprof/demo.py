"""``wattprof demo``: the shipped H100 trace through the whole record -> run -> report flow.

The real NVML collector reads the replay backend on a clock that runs ``speed`` times faster than
real time and starts at the trace's first sample; the recorder samples at 10 Hz of trace time; the
workload's step log is marked through the profile API as trace time passes each step's end.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import data
from .api import Profile
from .clock import ScaledClock
from .formats.nvml_trace import read_nvml_trace
from .formats.steps_jsonl import read_steps_jsonl
from .options import DEFAULT_INTERVAL_S
from .run import default_run_dir


def run_demo(*, out: str | Path | None = None, speed: float = 20.0, interval: float = DEFAULT_INTERVAL_S,
             progress: Callable[[str], None] | None = None) -> Path:
    trace_path = data.path("nvml_samples_10ms.csv")
    trace = read_nvml_trace(trace_path)
    steps = read_steps_jsonl(data.path("steps.jsonl")).sort_values("t_end", kind="stable")
    t0, t1 = trace.t_first, trace.t_last
    run_dir = Path(out) if out else default_run_dir("h100-demo")
    say = progress or (lambda m: None)
    say(f"wattprof demo: replaying {t1 - t0:.0f} s of a real H100 capture ({trace.info.get('name', 'GPU')}) "
        f"at {speed:g}x through the NVML collector, sampling every {interval} s of trace time ...")
    clock = ScaledClock(start=t0, speed=speed)
    prof = Profile("h100-demo", collectors=[f"nvml-replay:trace={trace_path},start=trace"], interval=interval,
                   out=run_dir, tags={"demo": "h100", "source": "replayed trace"}, join=False, clock=clock)
    with prof:
        for rec in steps.itertuples(index=False):
            wait = rec.t_end - clock.time()
            if wait > 0:
                clock.sleep(wait)
            prof.mark(t_start=rec.t_start, t_end=rec.t_end, tokens=None if rec.tokens != rec.tokens else rec.tokens,
                      label=rec.label, step=int(rec.step))
        clock.sleep(t1 - clock.time())
    return run_dir
