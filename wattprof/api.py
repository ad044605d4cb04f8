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
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from .clock import SYSTEM_CLOCK, Clock
from .errors import WattprofError
from .options import DEFAULT_INTERVAL_S, ProfileOptions, profile_options
from .recording.recorder import Recorder
from .recording.sampler import SamplerProcess
from .recording.session import RecordingSession
from .run import JsonlAppender, RunWriter, default_run_dir

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
        interval: sampling interval in seconds (default :data:`~wattprof.options.DEFAULT_INTERVAL_S`,
            0.1: NVML power refreshes every ~100 ms).
        out: run directory (default ``$WATTPROF_DIR`` or ``./wattprof-runs`` / ``<time>-<name>``).
        tags: ``{"commit": "abc123", "model": "8b"}``, kept in the run for history and nightly.
        label: default label of steps.
        sync: ``True`` to call ``torch.cuda.synchronize()`` before stamping each step's end, or a callable.
        join: ``True`` (default): join the run named by ``$WATTPROF_RUN_DIR`` when set (an enclosing
            ``wattprof record``); a run directory: join that run (it must exist); ``False``: always
            record a run of its own.
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
        rank: the rank written on each step (default: ``$RANK``, ``$SLURM_PROCID``, else 0).

    As one value: :class:`~wattprof.options.ProfileOptions` (:meth:`Profile.from_options`). The recording
    is a :class:`~wattprof.recording.session.RecordingSession` (here with ``sampler="thread"``, else in the sampler process).
    """

    def __init__(self, name: str | None = None, *, collectors: Sequence[str] | None = None,
                 interval: float = DEFAULT_INTERVAL_S, out: str | os.PathLike | None = None,
                 tags: dict[str, str] | None = None, label: str = "step",
                 sync: bool | Callable[[], Any] | None = None, join: bool | str | os.PathLike = True,
                 sampler: Literal["auto", "process", "thread"] = "auto", clock: Clock = SYSTEM_CLOCK,
                 otlp: bool | int = False, verbose: bool = True, rank: int | None = None) -> None:
        self._configure(profile_options(
            name, collectors=collectors, interval=interval, out=out, tags=tags, label=label, sync=sync,
            join=join if isinstance(join, bool) else Path(join), sampler=sampler,
            clock=None if clock is SYSTEM_CLOCK else clock, otlp=otlp, verbose=verbose, rank=rank))

    @classmethod
    def from_options(cls, options: ProfileOptions) -> Profile:
        """A profile with ``options`` (what the decorator, ``node_profile`` and the callbacks use)."""
        p = cls.__new__(cls)
        p._configure(options)
        return p

    def _configure(self, options: ProfileOptions) -> None:
        clock = options.clock if options.clock is not None else SYSTEM_CLOCK
        if options.sampler == "process" and clock is not SYSTEM_CLOCK:
            raise WattprofError("an injected clock needs sampler='thread'")
        self.options = options
        self.clock = clock
        self.sampler = ("process" if clock is SYSTEM_CLOCK else "thread") if options.sampler == "auto" else options.sampler
        self.run_dir: Path | None = None
        self.joined = False
        #: the recording, when this profile records in this process (``sampler="thread"``)
        self.session: RecordingSession | None = None
        self._sampler_proc: SamplerProcess | None = None
        self._sync: Callable[[], Any] | None = None
        self._steps: JsonlAppender | None = None
        self._step_n = 0
        self._last_mark: float | None = None
        self._saved_env: dict[str, str | None] = {}
        self._active = False
        self._rank = options.rank if options.rank is not None else rank()
        self.otlp_receiver: Any = None

    # ---- options, read-only -----------------------------------------------------------------------
    @property
    def name(self) -> str | None:
        return self.options.name

    @property
    def label(self) -> str:
        return self.options.label

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.options.tags)

    @property
    def interval(self) -> float:
        """Sampling interval in seconds."""
        return self.options.interval_s

    @property
    def rank(self) -> int:
        """The rank written on this profile's steps."""
        return self._rank

    @property
    def writer(self) -> RunWriter | None:
        """The run's writer while this process records it (``sampler="thread"``), else None."""
        return self.session.writer if self.session is not None else None

    @property
    def recorder(self) -> Recorder | None:
        """The sampling loop while this process records the run (``sampler="thread"``), else None."""
        return self.session.recorder if self.session is not None else None

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Profile:
        if self._active:
            raise WattprofError("this profile is already running")
        self._sync = _sync_fn(self.options.sync)
        target = self._run_to_join()
        if target is not None:
            self.run_dir = target
            self.joined = True
            self._announce_to_parent()
        else:
            self._record()
        # strict=False: a disk that refuses step marks warns once and never stops the training loop
        assert self.run_dir is not None
        self._steps = JsonlAppender(self.run_dir / f"steps-{self._rank}-{os.getpid()}.jsonl", strict=False)
        self._last_mark = self.clock.time()
        self._active = True
        with _stack_lock:
            _stack.append(self)
        return self

    def _run_to_join(self) -> Path | None:
        """The run this profile joins instead of recording one, or None."""
        join = self.options.join
        if isinstance(join, Path):
            if not (join / "meta.json").is_file():
                raise WattprofError(f"cannot join the run in {join}: it holds no run (no meta.json)")
            return join
        parent = os.environ.get(ENV_RUN_DIR)
        if join and parent and (Path(parent) / "meta.json").is_file():
            return Path(parent)
        return None

    def _record(self) -> None:
        """Start recording a run of this profile's own (in the sampler process or a thread)."""
        opts = self.options
        self.run_dir = opts.out if opts.out is not None else default_run_dir(opts.name)
        record = opts.record_options(self.run_dir)
        if self.sampler == "process":
            self._sampler_proc = SamplerProcess(record)
            run_id = self._sampler_proc.run_id
        else:
            self.session = RecordingSession(record, clock=self.clock).start()
            run_id = self.session.run_id
        for var, value in ((ENV_RUN_DIR, str(self.run_dir.resolve())), (ENV_RUN_ID, run_id)):
            self._saved_env[var] = os.environ.get(var)
            os.environ[var] = value
        if opts.otlp is not False and opts.otlp is not None:
            try:
                self._start_otlp()
            except WattprofError:  # e.g. the port is taken: undo the start, then say so
                self._active = True
                self.stop(status="failed")
                raise
        if opts.verbose:
            self._say_what_is_measured()

    def _start_otlp(self) -> None:
        from .otlp.receiver import DEFAULT_PORT, ENV_TRACES_ENDPOINT, OtlpReceiver, child_env

        assert self.run_dir is not None
        port = DEFAULT_PORT if self.options.otlp is True else int(self.options.otlp)
        self.otlp_receiver = OtlpReceiver(self.run_dir, port=port)
        self.otlp_receiver.start()
        env = child_env(dict(os.environ), self.otlp_receiver.endpoint)
        if env.get(ENV_TRACES_ENDPOINT) != os.environ.get(ENV_TRACES_ENDPOINT):
            self._saved_env[ENV_TRACES_ENDPOINT] = os.environ.get(ENV_TRACES_ENDPOINT)
            os.environ[ENV_TRACES_ENDPOINT] = env[ENV_TRACES_ENDPOINT]

    def _announce_to_parent(self) -> None:
        """Tell the recorded run this profile joined what it is called (merged by ``wattprof record``)."""
        if self.name is None and not self.options.tags:
            return
        from .naming import PROFILE_JOINED

        assert self.run_dir is not None
        tags = self.tags
        events = JsonlAppender(self.run_dir / f"events-{os.getpid()}.jsonl", strict=False)
        events.append({"t": self.clock.time(), "kind": PROFILE_JOINED, "name": self.name, "tags": tags,
                       "message": f"profile {self.name!r} joined the run (tags {tags})"})
        events.close()

    def _say_what_is_measured(self) -> None:
        """One stderr line: which devices are measured and how (no silent host-only fallback)."""
        import json
        import sys

        from .measuring import measuring_line

        assert self.run_dir is not None
        if self.session is not None:
            devices = self.session.meta.get("devices") or {}
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
                warnings.warn(problem, RuntimeWarning, stacklevel=3)
        if self.session is not None:
            done = self.session.stop(status, exit_code)
            if done.error is not None:  # said once; the run reads as unfinished (`wattprof repair`)
                warnings.warn(f"wattprof: the run in {done.run_dir} could not be finalised: {done.error}",
                              RuntimeWarning, stacklevel=3)
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
            with Profile.from_options(self.options.replace(name=self.options.name or fn.__name__)):
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
    """The innermost active profile in this process, or None. Looks, never starts anything."""
    with _stack_lock:
        return _stack[-1] if _stack else None


def current() -> Profile:
    """The innermost active profile in this process. Looks, never starts anything: a process
    under ``wattprof record`` that has no profile of its own gets one with :func:`join_recorded_run`."""
    p = current_or_none()
    if p is None:
        raise WattprofError("no active wattprof profile: wrap the loop in `with wattprof.profile() as prof:` "
                            "or run it under `wattprof record` (then `wattprof.step()` joins that run)")
    return p


_recorded_join: Profile | None = None
_recorded_join_lock = threading.Lock()
_recorded_join_warned = False


def join_recorded_run() -> Profile | None:
    """This process's profile joined to the run of an enclosing ``wattprof record``
    (``$WATTPROF_RUN_DIR``): started by the first call, the same one afterwards; None when this
    process is not under ``wattprof record`` (or its run directory holds no run: a warning says
    so once, and steps are not recorded).

    ``wattprof.step()`` and ``wattprof.mark()`` outside any profile call this. The profile only
    writes this process's step marks into the recorder's run (no sampler is started, nothing is
    finalised by it); each mark is one whole line written when the step ends, so nothing needs
    closing at exit: ``wattprof record`` reads the marks after the command ended."""
    global _recorded_join, _recorded_join_warned
    parent = os.environ.get(ENV_RUN_DIR)
    with _recorded_join_lock:
        if _recorded_join is not None and _recorded_join.run_dir == (Path(parent) if parent else None):
            return _recorded_join
        if not parent:
            return None
        if not (Path(parent) / "meta.json").is_file():
            if not _recorded_join_warned:
                _recorded_join_warned = True
                warnings.warn(f"wattprof: ${ENV_RUN_DIR}={parent} holds no run (no meta.json): steps marked "
                              "outside a profile are not recorded", RuntimeWarning, stacklevel=3)
            return None
        _recorded_join = Profile(join=Path(parent), verbose=False).start()
        return _recorded_join
