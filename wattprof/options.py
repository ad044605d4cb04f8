"""What a recording is asked to do, as plain data: the one home of the sampling interval's default.

- :class:`RecordOptions`: what a :class:`~wattprof.recording.session.RecordingSession` needs to record a run
  (directory, name, tags, collectors, interval, command). It is the only thing that crosses into
  the sampler process (as one JSON object), so the interval takes one path:
  ``RecordOptions.interval_s`` -> ``RecordingSession`` -> ``Recorder`` -> ``meta.interval_s`` -> analysis.
- :class:`ProfileOptions`: a :class:`~wattprof.api.Profile`'s options (the recording's, plus how
  steps are marked and where they go). The decorator, :func:`wattprof.distributed.node_profile` and
  the Hugging Face / Lightning callbacks pass one of these around instead of copying keyword lists.

This module imports only :mod:`wattprof.errors` (``import wattprof`` reads the default from here).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import InputError

if TYPE_CHECKING:
    from .clock import Clock

#: Sampling interval in seconds when none is given: NVML's power reading refreshes every ~100 ms.
DEFAULT_INTERVAL_S = 0.1

SamplerKind = Literal["auto", "process", "thread"]
SAMPLER_KINDS: tuple[str, ...] = ("auto", "process", "thread")


def _tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (tags or {}).items()}


@dataclass(frozen=True)
class RecordOptions:
    """What to record. ``out``: the run directory (None: ``$WATTPROF_DIR`` or ``./wattprof-runs`` /
    ``<time>-<name>``, chosen when the session starts); ``collectors``: specs such as
    ``("nvml", "host")`` (None: every available default); ``command``: the recorded command line
    (``wattprof record``), kept redacted in the run's meta."""

    out: Path | None = None
    name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    collectors: tuple[str, ...] | None = None
    interval_s: float = DEFAULT_INTERVAL_S
    command: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        if self.out is not None:
            set_(self, "out", Path(self.out))
        set_(self, "tags", _tags(self.tags))
        if self.collectors is not None:
            set_(self, "collectors", tuple(str(c) for c in self.collectors) or None)
        if self.command is not None:
            set_(self, "command", tuple(str(c) for c in self.command))
        interval = float(self.interval_s)
        if not interval > 0:
            raise InputError(f"interval_s must be a positive number of seconds, not {self.interval_s!r}")
        set_(self, "interval_s", interval)

    def to_json(self) -> str:
        """One line of JSON (the sampler process reads it back with :meth:`from_json`)."""
        d = dataclasses.asdict(self)
        d["out"] = None if self.out is None else str(self.out)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> RecordOptions:
        d = json.loads(text)
        if not isinstance(d, dict):
            raise InputError("record options: expected a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"record options: unknown field(s) {', '.join(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class ProfileOptions:
    """A :class:`~wattprof.api.Profile`'s options (see its docstring for each one).

    ``join``: ``True`` joins the run of an enclosing ``wattprof record`` (``$WATTPROF_RUN_DIR``)
    when there is one; a path joins that run (it must be recording); ``False`` always records a
    run of its own. ``rank``: the rank written on each step (None: ``$RANK`` / ``$SLURM_PROCID``,
    else 0). ``clock``: None is the system clock."""

    name: str | None = None
    collectors: tuple[str, ...] | None = None
    interval_s: float = DEFAULT_INTERVAL_S
    out: Path | None = None
    tags: dict[str, str] = field(default_factory=dict)
    label: str = "step"
    sync: bool | Callable[[], Any] | None = None
    join: bool | Path = True
    sampler: SamplerKind = "auto"
    clock: Clock | None = None
    otlp: bool | int = False
    verbose: bool = True
    rank: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.sampler not in SAMPLER_KINDS:
            raise InputError(f"sampler must be 'auto', 'process' or 'thread', not {self.sampler!r}")
        if self.out is not None:
            set_(self, "out", Path(self.out))
        if not isinstance(self.join, bool):
            set_(self, "join", Path(self.join))
        if self.collectors is not None:
            if isinstance(self.collectors, str):  # a single spec, not its characters
                set_(self, "collectors", (self.collectors,))
            set_(self, "collectors", tuple(str(c) for c in self.collectors) or None)
        set_(self, "tags", _tags(self.tags))
        if not float(self.interval_s) > 0:
            raise InputError(f"interval must be a positive number of seconds, not {self.interval_s!r}")
        set_(self, "interval_s", float(self.interval_s))
        if self.rank is not None:
            set_(self, "rank", int(self.rank))

    def replace(self, **changes: Any) -> ProfileOptions:
        """A copy with ``changes`` (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def record_options(self, run_dir: Path) -> RecordOptions:
        """What the recording session of this profile needs, for the run directory ``run_dir``."""
        return RecordOptions(out=run_dir, name=self.name, tags=self.tags, collectors=self.collectors,
                             interval_s=self.interval_s)


def profile_options(name: str | None = None, *, collectors: Sequence[str] | None = None,
                    interval: float = DEFAULT_INTERVAL_S, out: str | os.PathLike | None = None,
                    tags: Mapping[str, str] | None = None, **rest: Any) -> ProfileOptions:
    """:class:`ProfileOptions` from the public keyword names (``interval`` in seconds)."""
    return ProfileOptions(name=name, collectors=tuple(collectors) if collectors else None, interval_s=interval,
                          out=Path(out) if out is not None else None, tags=dict(tags or {}), **rest)
