"""The collector API and the registry of collectors.

A collector is a class with ``name``, ``available() -> (ok, reason)``, ``open() -> devices``,
``read() -> samples`` and ``close()``. Samples are dicts with ``device`` and metric columns from
:mod:`wattprof.schema` (and optionally ``t``; the recorder stamps the rest). Collectors know
nothing of runs, analysis or reports.

Built-in collectors are listed in :data:`BUILTINS`; third parties register a class under the
``wattprof.collectors`` entry-point group, e.g. in ``setup.cfg``::

    [options.entry_points]
    wattprof.collectors =
        mydev = mypkg.wattprof_plugin:MyDeviceCollector

On the command line a collector is named ``NAME`` or ``NAME:KEY=VALUE,KEY=VALUE`` (options are
passed to the class as keyword arguments, values converted to int/float where they parse).
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import CollectorError, InputError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "wattprof.collectors"

#: name -> "module:Class" of the built-in collectors (imported only when used).
BUILTINS: dict[str, str] = {
    "nvml": "wattprof.collectors.nvml:NvmlCollector",
    "nvml-replay": "wattprof.collectors.nvml:NvmlReplayCollector",
    "host": "wattprof.collectors.host:HostCollector",
    "nvidia-smi": "wattprof.collectors.nvidia_smi:NvidiaSmiCollector",
    "neuron": "wattprof.collectors.neuron:NeuronCollector",
    "cloudwatch": "wattprof.collectors.cloudwatch:CloudWatchCollector",
    "prometheus": "wattprof.collectors.prometheus:PrometheusCollector",
}

#: Collectors used when the user names none: every one of these that is available.
DEFAULTS: tuple[str, ...] = ("nvml", "host")


class Collector(ABC):
    """Base class of polled collectors."""

    name: ClassVar[str]
    #: Metric columns this collector may fill (the run stores exactly these).
    metrics: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock

    def available(self) -> tuple[bool, str]:
        """Whether the collector can run here, and a reason either way (shown by `wattprof collectors`)."""
        return True, "available"

    @abstractmethod
    def open(self) -> dict[str, dict]:
        """Start; return ``{device_id: metadata}`` (name, uuid, power_limit_w, power source...)."""

    @abstractmethod
    def read(self) -> list[dict[str, Any]]:
        """One reading of every device: a list of sample dicts. Raise CollectorError on failure."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Safe to call twice."""

    def options(self) -> dict[str, Any]:
        """The options this collector was built with (recorded in the run's metadata)."""
        return {}

    def take_run_events(self) -> list[tuple[str, str]]:
        """``(kind, message)`` of things that happened that are not errors (a counter reset, a server
        gone); the recorder records them after each read."""
        return []

    @property
    def version(self) -> str:
        from .. import __version__

        return __version__


class RemoteCollector(Collector):
    """A collector whose data is read after the fact from a remote store (e.g. CloudWatch): the
    recorder calls :meth:`fetch` once when the run stops, for the run's whole time window."""

    def read(self) -> list[dict[str, Any]]:
        return []

    @abstractmethod
    def fetch(self, t0: float, t1: float) -> list[dict[str, Any]]:
        """Samples (dicts with ``t``, ``device`` and metrics) for the wall-clock window [t0, t1]."""


@dataclass(frozen=True)
class CollectorSpec:
    name: str
    options: dict[str, Any]

    def __str__(self) -> str:
        if not self.options:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.options.items())


def _convert(value: str) -> Any:
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    return value


def parse_spec(text: str) -> CollectorSpec:
    """``nvml-replay:trace=x.csv,speed=10`` -> CollectorSpec("nvml-replay", {...})."""
    name, _, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise InputError(f"collector '{text}': empty name (expected NAME or NAME:KEY=VALUE,...)")
    opts: dict[str, Any] = {}
    if rest:
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise InputError(f"collector '{text}': option '{part}' is not KEY=VALUE")
            opts[key.strip().replace("-", "_")] = _convert(value.strip())
    return CollectorSpec(name, opts)


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def names() -> list[str]:
    """Every known collector name: built-ins first, then plugins."""
    plugins = [n for n in sorted(_entry_points()) if n not in BUILTINS]
    return list(BUILTINS) + plugins


def collector_class(name: str) -> type[Collector]:
    if name in BUILTINS:
        module, _, attr = BUILTINS[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    eps = _entry_points()
    if name in eps:
        try:
            cls = eps[name].load()
        except (ImportError, AttributeError) as e:
            raise CollectorError(f"collector plugin '{name}' ({eps[name].value}) failed to load: {e}") from None
        if not (isinstance(cls, type) and issubclass(cls, Collector)):
            raise CollectorError(f"collector plugin '{name}' ({eps[name].value}) is not a Collector subclass")
        return cls
    raise InputError(f"unknown collector '{name}' (known: {', '.join(names())})")


def create(spec: str | CollectorSpec, *, clock: Clock = SYSTEM_CLOCK) -> Collector:
    s = parse_spec(spec) if isinstance(spec, str) else spec
    cls = collector_class(s.name)
    valid = option_names(cls)
    unknown = [k for k in s.options if valid is not None and k not in valid]
    if unknown:
        listed = ", ".join(f"{k}=" for k in valid or ()) or "none"
        raise InputError(f"collector '{s.name}': unknown option {', '.join(repr(k) for k in unknown)} "
                         f"(options of {s.name}: {listed})")
    try:
        return cls(clock=clock, **s.options)
    except TypeError as e:
        raise InputError(f"collector '{s}': bad option ({e})") from None


def option_names(cls: type[Collector]) -> list[str] | None:
    """The keyword options a collector class takes (None when it takes any ``**kwargs``)."""
    import inspect

    params = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name not in ("self", "clock") and p.kind is not p.VAR_POSITIONAL
            and not p.name.startswith("_")]


def resolve(specs: Iterable[str | CollectorSpec] | None, *, clock: Clock = SYSTEM_CLOCK) -> list[Collector]:
    """Collectors for a run: the named ones (an unavailable one is an error), or the available defaults."""
    if specs:
        out = []
        for spec in specs:
            c = create(spec, clock=clock)
            ok, reason = c.available()
            if not ok:  # the user asked for it: a usage error, before anything runs
                raise InputError(f"collector '{spec}' is not available here: {reason} "
                                 "(`wattprof collectors` lists what is)")
            out.append(c)
        return out
    chosen = []
    for name in DEFAULTS:
        c = create(name, clock=clock)
        ok, reason = c.available()
        if ok:
            chosen.append(c)
        else:
            log.info("collector %s skipped: %s", name, reason)
    return chosen


def describe_all() -> list[tuple[str, bool, str]]:
    """``(name, available, reason)`` for every known collector, for `wattprof collectors`."""
    rows = []
    for name in names():
        try:
            ok, reason = create(name).available()
        except (CollectorError, InputError) as e:
            ok, reason = False, str(e)
        rows.append((name, ok, reason))
    return rows
