"""``wattprof.profile()``: a context manager (and decorator) around a training or inference loop.

A step mark records timestamps only: no NVML call happens on the training thread (a counter read
per step slowed an H100 loop by 18 %, REFERENCE.md). Energy is attributed to steps afterwards from
the sampler's trace. GPU work is asynchronous, so a mark records host time; loops that synchronise
each step (``loss.item()`` does) get exact boundaries; others may pass ``sync=True`` (calls
``torch.cuda.synchronize()`` before each step's end is stamped) or their own callable.

Inside a process started by ``wattprof record`` (or any process whose environment has
``WATTPROF_RUN_DIR``), ``profile()`` joins that run: its steps land in the parent's run directory
and no second sampler starts.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from .clock import SYSTEM_CLOCK, Clock
from .collectors import base as collectors_base
from .errors import WattprofError
from .recorder import DEFAULT_INTERVAL_S, Recorder
from .run import JsonlAppender, RunWriter, default_run_dir
from .sampler import SamplerProcess

ENV_RUN_DIR = "WATTPROF_RUN_DIR"
ENV_RUN_ID = "WATTPROF_RUN_ID"

_stack: list[Profile] = []
_stack_lock = threading.Lock()


def rank() -> int:
    """This process's global rank: torchrun's RANK, Slurm's SLURM_PROCID, else 0."""
    for var in ("RANK", "SLURM_PROCID"):
        v = os.environ.get(var)
        if v is not None and v.strip().isdigit():
            return int(v)
    return 0


def _sync_fn(sync: bool | Callable[[], Any] | None) -> Callable[[], Any] | None:
    if callable(sync):
        return sync
    if not sync:
        return None
    try:
        import torch
    except ImportError as e:
        raise WattprofError("sync=True needs PyTorch (or pass a callable that waits for the device)") from e
    return torch.cuda.synchronize if torch.cuda.is_available() else None


class Profile:
    """Record a run around a block of code.

    Args:
        name: the run's name (default: the function's name when used as a decorator, else ``run``).
        collectors: collector specs such as ``["nvml", "host"]`` or ``["nvml-replay:devices=2"]``
            (``wattprof collectors`` lists them); default: every available one of ``nvml`` and ``host``.
        interval: sampling interval in seconds (default 0.1: NVML power refreshes every ~100 ms).
        out: run directory (default ``$WATTPROF_DIR`` or ``./wattprof-runs`` / ``<time>-<name>``).
        tags: ``{"commit": "abc123", "model": "8b"}``, kept in the run for history and nightly.
        label: default label of steps.
        sync: ``True`` to call ``torch.cuda.synchronize()`` before stamping each step's end, or a callable.
        join: join the run named by ``$WATTPROF_RUN_DIR`` when set (default True).
        sampler: ``"process"`` samples in a child process (no GIL contention with the loop),
            ``"thread"`` in a thread of this process; ``"auto"`` (default): process on the system
            clock, thread when a clock is injected.
        clock: injectable clock (tests, replay).
        otlp: receive this process's OpenTelemetry GenAI spans (``True``: OTLP/HTTP on 127.0.0.1:4318;
            an int: that port, 0 for any free one) as model-call and tool steps grouped into agent
            tasks; sets ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` for the block unless it is set. Flush
            your tracer provider before the block ends (docs/agents.md).
        verbose: print one stderr line when recording starts saying what is measured
            (``wattprof: measuring: gpu:0 (NVML energy counter), host (estimate: ...)``).
    """

    def __init__(self, name: str | None = None, *, collectors: Sequence[str] | None = None,
                 interval: float = DEFAULT_INTERVAL_S, out: str | os.PathLike | None = None,
                 tags: dict[str, str] | None = None, label: str = "step",
                 sync: bool | Callable[[], Any] | None = None, join: bool = True,
                 sampler: Literal["auto", "process", "thread"] = "auto", clock: Clock = SYSTEM_CLOCK,
                 otlp: bool | int = False, verbose: bool = True) -> None:
        if sampler not in ("auto", "process", "thread"):
            raise WattprofError(f"sampler must be 'auto', 'process' or 'thread', not {sampler!r}")
        if sampler == "process" and clock is not SYSTEM_CLOCK:
            raise WattprofError("an injected clock needs sampler='thread'")
        self.sampler = ("process" if clock is SYSTEM_CLOCK else "thread") if sampler == "auto" else sampler
        self.name = name
        self.collector_specs = list(collectors) if collectors else None
        self.interval = interval
        self.out = out
        self.tags = dict(tags or {})
        self.label = label
        self.join = join
        self.clock = clock
        self.verbose = verbose
        self._sync_arg = sync
        self._sync: Callable[[], Any] | None = None
        self.run_dir: Path | None = None
        self.joined = False
        self.writer: RunWriter | None = None
        self.recorder: Recorder | None = None
        self._sampler_proc: SamplerProcess | None = None
        self._steps: JsonlAppender | None = None
        self._step_n = 0
        self._last_mark: float | None = None
        self._saved_env: dict[str, str | None] = {}
        self._active = False
        self._rank = rank()
        self.otlp = otlp
        self.otlp_receiver: Any = None

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Profile:
        if self._active:
            raise WattprofError("this profile is already running")
        self._sync = _sync_fn(self._sync_arg)
        parent = os.environ.get(ENV_RUN_DIR)
        if self.join and parent and (Path(parent) / "meta.json").is_file():
            self.run_dir = Path(parent)
            self.joined = True
            self._announce_to_parent()
        else:
            self.run_dir = Path(self.out) if self.out else default_run_dir(self.name)
            if self.sampler == "process":
                self._sampler_proc = SamplerProcess(out=self.run_dir, name=self.name, tags=self.tags,
                                                    collectors=self.collector_specs, interval=self.interval)
                run_id = self._sampler_proc.run_id
            else:
                collectors = collectors_base.resolve(self.collector_specs, clock=self.clock)
                self.writer = RunWriter.create(self.run_dir, name=self.name, tags=self.tags,
                                               interval_s=self.interval, clock_time=self.clock.time())
                self.recorder = Recorder(self.writer, collectors, interval=self.interval, clock=self.clock)
                self.recorder.start()
                run_id = self.writer.meta["id"]
            for var, value in ((ENV_RUN_DIR, str(self.run_dir.resolve())), (ENV_RUN_ID, run_id)):
                self._saved_env[var] = os.environ.get(var)
                os.environ[var] = value
            if self.otlp is not False and self.otlp is not None:
                try:
                    self._start_otlp()
                except WattprofError:  # e.g. the port is taken: undo the start, then say so
                    self._active = True
                    self.stop(status="failed")
                    raise
            if self.verbose:
                self._say_what_is_measured()
        # strict=False: a disk that refuses step marks warns once and never stops the training loop
        self._steps = JsonlAppender(self.run_dir / f"steps-{self._rank}-{os.getpid()}.jsonl", strict=False)
        self._last_mark = self.clock.time()
        self._active = True
        with _stack_lock:
            _stack.append(self)
        return self

    def _start_otlp(self) -> None:
        from .otlp.receiver import DEFAULT_PORT, ENV_TRACES_ENDPOINT, OtlpReceiver, child_env

        assert self.run_dir is not None
        port = DEFAULT_PORT if self.otlp is True else int(self.otlp)
        self.otlp_receiver = OtlpReceiver(self.run_dir, port=port)
        self.otlp_receiver.start()
        env = child_env(dict(os.environ), self.otlp_receiver.endpoint)
        if env.get(ENV_TRACES_ENDPOINT) != os.environ.get(ENV_TRACES_ENDPOINT):
            self._saved_env[ENV_TRACES_ENDPOINT] = os.environ.get(ENV_TRACES_ENDPOINT)
            os.environ[ENV_TRACES_ENDPOINT] = env[ENV_TRACES_ENDPOINT]

    def _announce_to_parent(self) -> None:
        """Tell the recorded run this profile joined what it is called (merged by ``wattprof record``)."""
        if self.name is None and not self.tags:
            return
        from .naming import PROFILE_JOINED

        assert self.run_dir is not None
        events = JsonlAppender(self.run_dir / f"events-{os.getpid()}.jsonl", strict=False)
        events.append({"t": self.clock.time(), "kind": PROFILE_JOINED, "name": self.name, "tags": self.tags,
                       "message": f"profile {self.name!r} joined the run (tags {self.tags})"})
        events.close()

    def _say_what_is_measured(self) -> None:
        """One stderr line: which devices are measured and how (no silent host-only fallback)."""
        import json
        import sys

        from .measuring import measuring_line

        assert self.run_dir is not None
        if self.writer is not None:
            devices = self.writer.meta.get("devices") or {}
        else:
            try:
                devices = json.loads((self.run_dir / "meta.json").read_text(encoding="utf-8")).get("devices") or {}
            except (OSError, ValueError):
                devices = {}
        print(f"wattprof: {measuring_line(devices)}", file=sys.stderr, flush=True)

    def stop(self, *, status: str = "finished", exit_code: int | None = None) -> None:
        if not self._active:
            return
        self._active = False
        with _stack_lock:
            if self in _stack:
                _stack.remove(self)
        if self.otlp_receiver is not None:
            import warnings

            try:
                self.otlp_receiver.stop()
            except (WattprofError, OSError, ValueError) as e:  # measurement never breaks the user's program
                warnings.warn(f"wattprof: the OTLP receiver could not write its steps: {e}", RuntimeWarning,
                              stacklevel=2)
            self.otlp_receiver = None
        if self._steps is not None:
            self._steps.close()
        if self._sampler_proc is not None:
            problem = self._sampler_proc.stop(status, exit_code, run_dir=self.run_dir)
            if problem:  # measurement failed: said once, the user's program goes on
                import warnings

                warnings.warn(problem, RuntimeWarning, stacklevel=3)
        if self.recorder is not None and self.writer is not None:
            self.recorder.stop()
            self.writer.finalize(status=status, exit_code=exit_code, ended_at=self.clock.time())
            from .history import try_write_summary

            try_write_summary(self.writer.path)
        if not self.joined:
            for var, old in self._saved_env.items():
                if old is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = old

    def __enter__(self) -> Profile:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.stop(status="finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.stop(status="interrupted")
        else:
            self.stop(status="failed")

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Use as a decorator: each call of ``fn`` is one run."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            p = Profile(self.name or fn.__name__, collectors=self.collector_specs, interval=self.interval,
                        out=self.out, tags=self.tags, label=self.label, sync=self._sync_arg, join=self.join,
                        sampler=self.sampler, clock=self.clock, otlp=self.otlp, verbose=self.verbose)
            with p:
                return fn(*args, **kwargs)

        return wrapper

    # ---- steps ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def step(self, tokens: float | None = None, label: str | None = None, **extra: Any) -> Iterator[dict]:
        """Time one step: ``with prof.step(tokens=n, label="train"):``. The yielded dict may be
        updated inside the block (e.g. ``s["tokens"] = n`` once known)."""
        info: dict[str, Any] = {"tokens": tokens, "label": label, **extra}
        t_start = self.clock.time()
        try:
            yield info
        finally:
            if self._sync is not None:
                self._sync()
            self._write_step(t_start, self.clock.time(), info)

    def mark(self, *, tokens: float | None = None, label: str | None = None, t_start: float | None = None,
             t_end: float | None = None, **extra: Any) -> None:
        """An explicit step boundary: a step ended now (or at ``t_end``) that began at the previous
        mark (or at ``t_start``, or when the profile started)."""
        if self._sync is not None and t_end is None:
            self._sync()
        end = self.clock.time() if t_end is None else float(t_end)
        begin = (self._last_mark if t_start is None else float(t_start))
        if begin is None:
            begin = end
        self._write_step(begin, end, {"tokens": tokens, "label": label, **extra})

    def _write_step(self, t_start: float, t_end: float, info: dict[str, Any]) -> None:
        if self._steps is None:
            raise WattprofError("profile is not running: use it as `with wattprof.profile() as prof:`")
        row = {"step": info.pop("step", self._step_n), "t_start": t_start, "t_end": t_end,
               "tokens": info.pop("tokens", None), "label": info.pop("label", None) or self.label,
               "rank": self._rank}
        row.update({k: v for k, v in info.items() if v is not None})
        self._steps.append(row)
        self._step_n += 1
        self._last_mark = t_end


def current_or_none() -> Profile | None:
    """The innermost active profile, the run of an enclosing ``wattprof record``, or None."""
    with _stack_lock:
        if _stack:
            return _stack[-1]
    if os.environ.get(ENV_RUN_DIR):
        return current()
    return None


def current() -> Profile:
    """The innermost active profile; in a child of ``wattprof record``, a profile joined to its run."""
    with _stack_lock:
        if _stack:
            return _stack[-1]
    if os.environ.get(ENV_RUN_DIR):
        p = Profile()
        p.start()
        import atexit

        atexit.register(p.stop)
        return p
    raise WattprofError("no active wattprof profile: wrap the loop in `with wattprof.profile() as prof:` "
                        "or run it under `wattprof record -- CMD`")
