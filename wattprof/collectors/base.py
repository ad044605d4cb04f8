"""The collector API and the registry of collectors.

A collector is a class with ``name``, ``available() -> (ok, reason)``, ``open() -> devices``,
``read() -> samples`` and ``close()``. Samples are dicts with ``device`` and metric columns from
:mod:`wattprof.schema` (and optionally ``t``; the recorder stamps the rest). Collectors know
nothing of runs, analysis or reports.

Beside its samples a collector reports what happened (a device lost, a metric missing, a
streaming process restarted, ECC errors, late remote data) as :class:`Event` s queued with
:meth:`Collector.emit`, and late device metadata (a period chosen at fetch, GPM stopped) with
:meth:`Collector.update_device`. The recorder takes all three at once, as a :class:`Reading`,
from :meth:`Collector.collect` (or :meth:`RemoteCollector.collect_window`): one mechanism, never
an exception for something that is not a failed read.

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
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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


#: Event kinds collectors report (the recorder adds its own: collector_timeout, clock_jump, ...).
COLLECTOR_ERROR = "collector_error"  #: a read, open, fetch or close failed
COLLECTOR_NOTE = "collector_note"  #: a fact about the data worth keeping (late or partial remote data)
COLLECTOR_RESTART = "collector_restart"  #: a streaming collector's process exited and is restarted
BAD_OUTPUT = "collector_bad_output"  #: a tool printed something that does not parse
TOOL_ERROR = "collector_tool_error"  #: a tool reported an error of its own in its output
TIMESTAMP_LAG = "timestamp_lag"  #: a tool's lines arrive far from their own timestamps
ECC_ERRORS = "ecc_errors"  #: a device's ECC error counters are non-zero or changed
POWER_SOURCE_CHANGED = "power_source_changed"  #: where a device's power comes from changed mid-run
DEVICE_SKIPPED = "device_skipped"
DEVICE_UNSELECTED = "device_unselected"
DEVICE_LOST = "device_lost"
DEVICE_READ_ERROR = "device_read_error"
METRIC_MISSING = "metric_missing"


@dataclass(frozen=True)
class Event:
    """Something a collector saw beside its samples. ``device``: the device it concerns, if one;
    ``t``: when (wall clock; the recorder stamps it otherwise); ``fields``: extra columns of the
    run's event log (``reason``, ``metrics``, ``dropped`` ...)."""

    kind: str
    message: str
    device: str | None = None
    t: float | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, value: Any) -> Event:
        """An :class:`Event` from what a third-party plugin may queue: an Event, a ``(kind,
        message)`` pair or a dict with ``kind``, ``message`` and extra fields."""
        if isinstance(value, Event):
            return value
        if isinstance(value, tuple) and len(value) == 2:
            return cls(str(value[0]), str(value[1]))
        if isinstance(value, Mapping):
            extra = {k: v for k, v in value.items() if k not in ("kind", "message", "device", "t", "source")}
            t = value.get("t")
            return cls(str(value.get("kind") or COLLECTOR_NOTE), str(value.get("message", "")),
                       device=value.get("device"), t=float(t) if isinstance(t, int | float) else None, fields=extra)
        return cls(COLLECTOR_NOTE, str(value))


@dataclass
class Reading:
    """What one read (or a remote collector's fetch) gave: samples, updates to the devices'
    metadata (merged into the run's devices) and events."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


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

    # ---- what happened beside the samples (thread-safe: streaming collectors queue from threads) ----
    def _outbox(self) -> tuple[threading.Lock, list[Event], dict[str, dict[str, Any]]]:
        box = self.__dict__.get("_wattprof_outbox")
        if box is None:  # lazily: a plugin's __init__ may not call ours
            box = self.__dict__.setdefault("_wattprof_outbox", (threading.Lock(), [], {}))
        return box

    def emit(self, kind: str, message: str, *, device: str | None = None, t: float | None = None,
             **fields: Any) -> None:
        """Queue an event for the recorder (taken with the next reading)."""
        lock, events, _ = self._outbox()
        with lock:
            events.append(Event(kind, message, device=device, t=t, fields=fields))

    def update_device(self, device: str, info: Mapping[str, Any]) -> None:
        """Queue new or changed metadata of ``device`` (merged into the run's devices)."""
        lock, _, devices = self._outbox()
        with lock:
            devices.setdefault(device, {}).update(info)

    def take_events(self) -> list[Event]:
        """The events queued since the last call."""
        lock, events, _ = self._outbox()
        if not events:  # the common case, without the lock (an event queued meanwhile is taken next time)
            return []
        with lock:
            out = list(events)
            events.clear()
        return out

    def take_devices(self) -> dict[str, dict[str, Any]]:
        """The device metadata updates queued since the last call."""
        lock, _, devices = self._outbox()
        if not devices:
            return {}
        with lock:
            out = {d: dict(info) for d, info in devices.items()}
            devices.clear()
        return out

    def collect(self) -> Reading:
        """One reading: :meth:`read`'s samples and what was queued beside them. An exception from
        ``read()`` propagates (the recorder records it); the queue is then taken with
        :meth:`take_events` / :meth:`take_devices`."""
        rows = self.read()
        events = self.take_events()
        return Reading(rows, self.take_devices(), [Event.of(e) for e in events] if events else [])

    @property
    def version(self) -> str:
        from .._version import __version__

        return __version__


class RemoteCollector(Collector):
    """A collector whose data is read after the fact from a remote store (e.g. CloudWatch): the
    recorder calls :meth:`fetch` once when the run stops, for the run's whole time window."""

    def read(self) -> list[dict[str, Any]]:
        return []

    @abstractmethod
    def fetch(self, t0: float, t1: float) -> list[dict[str, Any]]:
        """Samples (dicts with ``t``, ``device`` and metrics) for the wall-clock window [t0, t1]."""

    def collect_window(self, t0: float, t1: float) -> Reading:
        """:meth:`fetch` and what was queued beside it (devices known only now, notes)."""
        rows = self.fetch(t0, t1)
        return Reading(rows, self.take_devices(), [Event.of(e) for e in self.take_events()])


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
    import dataclasses
    import inspect

    options_class = getattr(cls, "options_class", None)  # a collector configured by an options dataclass
    if options_class is not None and dataclasses.is_dataclass(options_class):
        return [f.name for f in dataclasses.fields(options_class)]
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
