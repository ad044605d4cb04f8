"""wattprof: how many joules each step and each token of a GPU/accelerator run cost, and why.

Public API::

    import wattprof
    with wattprof.profile(name="train") as prof:
        for batch in loader:
            with prof.step(tokens=batch_tokens, label="train"):
                train_step(batch)

    run = wattprof.load_run("wattprof-runs/...")

Importing this package is cheap and side-effect free: NVML, codecarbon, matplotlib and boto3
are imported only by the functions that need them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ._version import __version__
from .options import DEFAULT_INTERVAL_S

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from .analysed_run import AnalysedRun
    from .analysed_run import AnalysedRun as Run
    from .api import Profile
    from .clock import Clock

__all__ = ["profile", "step", "mark", "load_run", "Run", "Profile", "__version__"]


def profile(name: str | None = None, *, collectors: Sequence[str] | None = None, interval: float = DEFAULT_INTERVAL_S,
            out: str | os.PathLike | None = None, tags: dict[str, str] | None = None, label: str = "step",
            sync: bool | Callable[[], Any] | None = None, join: bool | str | os.PathLike = True,
            sampler: Literal["auto", "process", "thread"] = "auto", verbose: bool = True,
            otlp: bool | int = False, clock: Clock | None = None, rank: int | None = None) -> Profile:
    """Record a run around a block or a function: ``with wattprof.profile("train") as prof:`` or
    ``@wattprof.profile("train")`` (one run per call).

    Args:
        name: the run's name (default: the function's name as a decorator, else ``run``). Under
            ``wattprof record`` it names the recorded run (the command line's ``--name`` wins).
        collectors: e.g. ``["nvml", "host"]`` or ``["nvml-replay"]`` (no GPU); default: every
            available one of ``nvml`` and ``host``. ``wattprof collectors`` lists them.
        interval: sampling interval in seconds (default 0.1: ``wattprof.options.DEFAULT_INTERVAL_S``).
        out: run directory (default ``$WATTPROF_DIR`` or ``./wattprof-runs`` / ``<time>-<name>``).
        tags: ``{"commit": "abc123", "benchmark": "llama-ft"}``; nightly groups runs by ``benchmark``.
        label: default label of steps.
        sync: ``True`` calls ``torch.cuda.synchronize()`` before each step's end is stamped (or pass
            a callable), so a step's energy is the GPU's, not only the host's.
        join: join the run of an enclosing ``wattprof record`` (``$WATTPROF_RUN_DIR``); a run
            directory: join that run; ``False``: always record a run of its own.
        sampler: ``"process"`` (no GIL contention), ``"thread"``, or ``"auto"``.
        verbose: one stderr line at start saying what is measured.
        otlp: receive this process's OpenTelemetry GenAI spans as model-call and tool steps grouped
            into agent tasks (``True``: OTLP/HTTP on 127.0.0.1:4318; an int: that port, 0 for any
            free one); sets ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` for the block (docs/agents.md).
        clock: an injected clock (tests, replaying a log; needs ``sampler="thread"``).
        rank: the rank written on each step (default: ``$RANK``, ``$SLURM_PROCID``, else 0).

    Then ``prof.step(tokens=..., label=...)`` times a step, ``prof.mark(...)`` records a boundary,
    ``prof.run_dir`` is the run (``wattprof.load_run(prof.run_dir)``).
    """
    from .api import Profile

    extra = {"clock": clock} if clock is not None else {}
    return Profile(name, collectors=collectors, interval=interval, out=out, tags=tags, label=label, sync=sync,
                   join=join, sampler=sampler, verbose=verbose, otlp=otlp, rank=rank, **extra)


def step(tokens: float | None = None, label: str | None = None, **extra: Any) -> contextlib.AbstractContextManager[dict]:
    """Time a step in the innermost active profile, else in the run of an enclosing ``wattprof
    record`` (joined by :func:`wattprof.api.join_recorded_run`, no atexit hook, no sampler):
    ``with wattprof.step(tokens=n, label="train"):``. Outside both it does nothing, so library
    code may be instrumented unconditionally."""
    from .api import current_or_none, join_recorded_run

    prof = current_or_none() or join_recorded_run()
    if prof is None:
        return contextlib.nullcontext({"tokens": tokens, "label": label, **extra})
    return prof.step(tokens=tokens, label=label, **extra)


def mark(**kwargs: Any) -> None:
    """Record an explicit step boundary in the active profile, else in the run of an enclosing
    ``wattprof record`` (a no-op outside both). See :meth:`wattprof.api.Profile.mark`."""
    from .api import current_or_none, join_recorded_run

    prof = current_or_none() or join_recorded_run()
    if prof is not None:
        prof.mark(**kwargs)


def load_run(path: str | os.PathLike) -> AnalysedRun:
    """Open a run directory: ``run.report()`` (the report model), ``run.step_energy()`` (one row per
    step: ``energy_j``, ``j_per_token``, ``source``), ``run.samples`` / ``run.steps`` / ``run.events``
    (pandas DataFrames), ``run.meta``."""
    from .analysed_run import AnalysedRun

    return AnalysedRun.open(os.fspath(path))


def __getattr__(name: str) -> Any:
    if name == "Run":  # the run opened for analysis (wattprof.run.Run plus report() and step_energy())
        from .analysed_run import AnalysedRun

        return AnalysedRun
    if name == "Profile":
        from .api import Profile

        return Profile
    raise AttributeError(name)
