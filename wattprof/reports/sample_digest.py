"""What a report needs from a run's samples, computed one device at a time.

The report never holds the samples table. Two passes over the devices, each device's frame read,
reduced and dropped before the next:

1. **energy** (every device; ``t`` and the energy-source columns): the device's energy curve
   (:func:`wattprof.analysis.energy.device_curve`), mean and peak power, the gap note, the
   counter-vs-instant-power self-check, the downsampled power timeline and the time range.
   The curves are kept (16 bytes per sample of a device with power data): every energy figure
   of the report is a difference of them.
2. **evidence** (after the steps are aligned with the curves; accelerators only, with the
   utilisation, activity, clock and throttle columns): the bottleneck evidence of every window
   set at once (labels, unlabelled time, timeline), the idle intervals and the power range
   inside each label's span (the plausibility check).

A device's frame comes from a :class:`~wattprof.run.scan.SampleScan` (Parquet by row group: the
bounded-memory path) or from the run's whole samples table (:class:`WholeSamples`: runs the scan
cannot read without cleaning, and the reference the scan is tested against); the figures are the
same either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np
import pandas as pd

from .. import schema
from ..analysis import bottleneck, quality
from ..analysis import energy as energy_mod
from ..analysis import idle as idle_mod
from ..analysis.align import merge_intervals
from ..power_columns import MEASURED_POWER, preferred_power_column
from ..threads import helpers, submit

if TYPE_CHECKING:
    from ..analysis.align import LabelEnergy

ENERGY_COLUMNS = tuple(schema.SOURCE_COLUMN[s] for s in schema.ENERGY_SOURCES)
IDLE_COLUMNS = (*MEASURED_POWER, "util_pct", "sm_active_pct")
T_ = TypeVar("T_")


class DeviceFrames(Protocol):
    """One device's samples at a time (:class:`~wattprof.run.scan.SampleScan` or :class:`WholeSamples`)."""

    devices: list[str]
    columns: list[str]

    def rows(self, device: str) -> int: ...

    def frame(self, device: str, columns: Iterable[str]) -> pd.DataFrame: ...


class WholeSamples:
    """A samples table already in memory, served one device at a time (by one thread: a shared
    pandas frame)."""

    threads = False

    def __init__(self, samples: pd.DataFrame) -> None:
        self.samples = samples
        self.columns = [str(c) for c in samples.columns]
        self._rows = samples.groupby(schema.DEVICE, sort=True).indices if len(samples) else {}
        self.devices = [str(d) for d in self._rows]

    def rows(self, device: str) -> int:
        return len(self._rows[device])

    def frame(self, device: str, columns: Iterable[str]) -> pd.DataFrame:
        cols = [schema.T, schema.DEVICE, *(c for c in dict.fromkeys(columns)
                                          if c in self.columns and c not in (schema.T, schema.DEVICE))]
        return self.samples.iloc[self._rows[device]][cols]


@dataclass
class DeviceFigures:
    """Pass 1: one device's energy figures."""

    device: str
    curve: energy_mod.EnergyCurve
    mean_power_w: float | None
    max_power_w: float | None
    gap_note: str | None
    self_check: dict[str, float] | None
    t_min: float
    t_max: float
    #: power columns (``power_w``, ``power_avg_w``) with at least one reading
    power_columns: set[str]
    #: the power timeline: bin-mean times, values and the column they come from (None: no power)
    series: tuple[np.ndarray, np.ndarray, str | None]


#: Devices whose samples are read and reduced at the same time (threads: decoding and numpy release
#: the GIL), on runs of at most :data:`PARALLEL_MAX_ROWS` samples per device; longer runs take one
#: device at a time, so that memory stays one device's columns.
WORKERS = 2
PARALLEL_MAX_ROWS = 2_000_000


def _big(frames: DeviceFrames, devices: list[str]) -> bool:
    return max((frames.rows(d) for d in devices), default=0) > PARALLEL_MAX_ROWS


def _each_device(frames: DeviceFrames, devices: list[str], fn: Callable[[str], T_]) -> list[T_]:
    """``fn(device)`` for each device, in order; two at a time when the devices are small enough."""
    if _big(frames, devices) or not getattr(frames, "threads", False) or len(devices) < 2 \
            or (os.cpu_count() or 1) < 2:
        return [fn(d) for d in devices]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(fn, devices))


@contextmanager
def _reader(frames: DeviceFrames, devices: list[str], columns: Callable[[str], Iterable[str]],
            ahead: bool) -> Iterator[Callable[[str], pd.DataFrame]]:
    """``read(device)``: its frame of ``columns(device)``. ``ahead`` (devices taken one by one, in
    ``devices``' order): the next device's frame is read on a thread of its own while this one is
    reduced (Parquet decoding releases the GIL), so at most two frames are in memory."""
    if not ahead or not getattr(frames, "threads", False) or (os.cpu_count() or 1) < 2:
        yield lambda dev: frames.frame(dev, columns(dev))
        return
    order = {d: i for i, d in enumerate(devices)}
    pending: dict[str, Future[pd.DataFrame]] = {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="wattprof-read") as pool:

        def ask(i: int) -> None:
            if i < len(devices):
                pending[devices[i]] = pool.submit(frames.frame, devices[i], columns(devices[i]))

        def read(dev: str) -> pd.DataFrame:
            got = pending.pop(dev, None)
            ask(order[dev] + 1)  # queued behind this one: read while this one is reduced
            return got.result() if got is not None else frames.frame(dev, columns(dev))

        ask(0)
        try:
            yield read
        finally:
            for f in pending.values():
                f.cancel()


def energy_pass(frames: DeviceFrames, timeline_points: int) -> tuple[dict[str, DeviceFigures], pd.DataFrame]:
    """Pass 1 over every device; also returns the samples of serving engines (``serve:*``: token
    counters, no power; few rows), whole, for the serving section. Each device's frame is read
    here; the gap check, the power timeline and the self-check's instant-power curve are numpy
    work on helper threads while this thread builds the energy curve."""
    def columns(dev: str) -> Iterable[str]:
        return frames.columns if schema.device_kind(dev) == "serve" else ENERGY_COLUMNS

    # long runs (one device at a time): the next device is read while this one is reduced; the
    # energy columns of two devices stay well under the evidence pass's peak
    with helpers() as pool, _reader(frames, frames.devices, columns, _big(frames, frames.devices)) as read:

        def one(dev: str) -> tuple[DeviceFigures, pd.DataFrame | None]:
            serve = schema.device_kind(dev) == "serve"
            df = read(dev)
            t = df[schema.T].to_numpy(float)
            gap = submit(pool, _gap_note, dev, t)
            col = preferred_power_column(df)
            series = submit(pool, bin_means, t, df[col].to_numpy(float), timeline_points) if col else None
            source = energy_mod.choose_source(df)
            readings = {p: _readings(df, p) for p in MEASURED_POWER}
            inst = submit(pool, energy_mod.power_curve, t, df["power_w"].to_numpy(float)) \
                if source == "counter" and readings.get("power_w", 0) >= 2 else None
            c = energy_mod.device_curve(df, dev, source)
            mean_w, max_w = energy_mod.mean_power(df, dev)
            check = None
            if inst is not None:
                ti, ei = inst.result()
                check = self_check(c, energy_mod.EnergyCurve(dev, "instant_power", ti, ei))
            st, sv = series.result() if series is not None else (np.empty(0), np.empty(0))
            return DeviceFigures(
                device=dev, curve=c, mean_power_w=mean_w, max_power_w=max_w, gap_note=gap.result(), self_check=check,
                t_min=float(np.nanmin(t)) if len(t) else float("nan"),
                t_max=float(np.nanmax(t)) if len(t) else float("nan"),
                power_columns={p for p, n in readings.items() if n},
                series=(st, sv, col)), df if serve else None

        done = _each_device(frames, frames.devices, one)
    out = {f.device: f for f, _ in done}
    serve = [df for _, df in done if df is not None]
    serve_df = pd.concat(serve, ignore_index=True) if serve else \
        pd.DataFrame({schema.T: pd.Series(dtype="float64"), schema.DEVICE: pd.Series(dtype=str)})
    return out, serve_df


def _readings(df: pd.DataFrame, col: str) -> int:
    """How many readings column ``col`` of ``df`` has (0 without the column)."""
    return int(df[col].notna().sum()) if col in df.columns else 0


def _gap_note(dev: str, t: np.ndarray) -> str | None:
    return quality.gap_flag(dev, t if _is_sorted(t) else np.sort(t))


def _is_sorted(t: np.ndarray) -> bool:
    return len(t) < 2 or bool((t[1:] >= t[:-1]).all())


def self_check(c: energy_mod.EnergyCurve, inst: energy_mod.EnergyCurve) -> dict[str, float] | None:
    """Counter (``c``) vs integrated instant power (``inst``) over the time both cover."""
    t0, t1 = max(c.t_first, inst.t_first), min(c.t_last, inst.t_last)
    if not t1 > t0:
        return None
    e_c, e_i = float(c.between(t0, t1)), float(inst.between(t0, t1))
    return {"counter_j": e_c, "instant_power_j": e_i,
            "difference_pct": 100 * (e_i / e_c - 1) if e_c > 0 else float("nan")}


def bin_means(t: np.ndarray, v: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """The readings ``v`` at ``t`` (NaN dropped), as the mean time and value per time bin (``points``
    equal bins over the time range, empty bins left out) when there are more than ``points``."""
    ok = ~(np.isnan(t) | np.isnan(v))
    if not ok.all():
        t, v = t[ok], v[ok]
    if len(t) <= points:  # mean per time bin: keeps energy-relevant shape, bounded size
        return t.copy(), v.copy()
    span = t[-1] - t[0]
    b = np.minimum(((t - t[0]) / span * points).astype(int), points - 1)
    if not _is_sorted(t):
        n = np.bincount(b, minlength=points)
        full = n > 0
        return (np.bincount(b, weights=t, minlength=points)[full] / n[full],
                np.bincount(b, weights=v, minlength=points)[full] / n[full])
    first = np.flatnonzero(np.concatenate([[True], b[1:] != b[:-1]]))  # sorted: each bin is one run
    n = np.diff(np.append(first, len(t)))
    return np.add.reduceat(t, first) / n, np.add.reduceat(v, first) / n


@dataclass
class WindowSet:
    """Windows ``[a_i, b_i]`` pooled into ``n`` groups by ``codes`` (see :mod:`.bottleneck`)."""

    a: np.ndarray
    b: np.ndarray
    codes: np.ndarray
    n: int


@dataclass
class EvidenceRequest:
    """What pass 2 computes, and for which devices."""

    #: bottleneck evidence: the GPUs, the power limits, the window sets by name
    gpus: list[str] = field(default_factory=list)
    power_limits: dict[str, float] = field(default_factory=dict)
    windows: dict[str, WindowSet] = field(default_factory=dict)
    #: idle intervals: the accelerators, the idle power given per device
    idle_devices: list[str] = field(default_factory=list)
    idle_power_w: dict[str, float] = field(default_factory=dict)
    #: the windows the idle intervals are wanted in (None: the whole run); see ``idle.device_idle``
    idle_within: tuple[np.ndarray, np.ndarray] | None = None
    #: plausibility: the devices, the power column, each label's merged span ``(s0, s1)``
    range_devices: list[str] = field(default_factory=list)
    range_column: str | None = None
    label_spans: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: per device, the power columns with readings (``DeviceFigures.power_columns``)
    power_columns: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class Evidence:
    """Pass 2's results."""

    #: per window set, per group, the evidence averaged over the GPUs
    windows: dict[str, list[dict[str, float]]]
    #: intervals where every idle device idles (exact inside ``EvidenceRequest.idle_within``), and each
    #: device's idle floor (W)
    idle: tuple[np.ndarray, np.ndarray]
    idle_floors: dict[str, float]
    #: per label, (sum over devices of the lowest reading in its span, sum of the highest), when
    #: every device of ``range_devices`` has readings and the label's span holds some
    power_range: dict[str, tuple[float, float]]
    #: the window sets the evidence is for (``EvidenceRequest.windows``)
    sets: dict[str, WindowSet] = field(default_factory=dict)
    #: the windows ``idle`` is exact in (``EvidenceRequest.idle_within``)
    idle_within: tuple[np.ndarray, np.ndarray] | None = None


def evidence_pass(frames: DeviceFrames, req: EvidenceRequest) -> Evidence:
    """Pass 2 over the devices ``req`` names."""
    wanted = set(req.gpus) | set(req.idle_devices) | set(req.range_devices)
    cols = [*bottleneck.EVIDENCE_COLUMNS, *IDLE_COLUMNS, *([req.range_column] if req.range_column else [])]
    per_gpu: dict[str, dict[str, np.ndarray]] = {}
    idle: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    floors: dict[str, float] = {}
    ranges: dict[str, dict[str, tuple[float, float]]] = {}
    has_range: set[str] = set()
    allw = _concat(req.windows)

    def one(dev: str, pool: ThreadPoolExecutor | None) -> None:
        # power: the device's first column with readings is the one every rule uses
        power = next((p for p in MEASURED_POWER if p in req.power_columns.get(dev, ())), None)
        df = frames.frame(dev, [c for c in cols if c not in MEASURED_POWER or c in (power,
                                                                                               req.range_column)])
        # the device's low power reading (a percentile of every sample): taken once, for both rules
        wants_low = (dev in req.gpus and allw is not None) or \
            (dev in req.idle_devices and req.idle_power_w.get(dev) is None)
        low = bottleneck.low_power_reading(df) if wants_low and len(df) else None
        if dev in req.gpus and allw is not None:
            per_gpu[dev] = bottleneck.device_evidence(df, allw.a, allw.b, allw.codes, allw.n,
                                                      req.power_limits.get(dev, float("nan")), low_reading_w=low,
                                                      pool=pool)
        if dev in req.idle_devices and len(df):
            given = req.idle_power_w.get(dev)
            limit = float(req.power_limits.get(dev, np.nan))
            floors[dev] = float(given) if given is not None else \
                bottleneck.idle_floor(df, limit, bottleneck.DEFAULT_THRESHOLDS, low)
            idle[dev] = idle_mod.device_idle(df, floors[dev], req.idle_within)
        if dev in req.range_devices and req.range_column:
            ranges[dev], present = _label_power_range(df, req.range_column, req.label_spans)
            if present:
                has_range.add(dev)

    with helpers() as pool:  # the bottleneck evidence integrates two columns at a time
        _each_device(frames, [d for d in frames.devices if d in wanted], lambda d: one(d, pool))
    out_idle: tuple[np.ndarray, np.ndarray] | None = None
    for dev in req.idle_devices:
        if dev in idle:
            out_idle = idle[dev] if out_idle is None else idle_mod.intersect(*out_idle, *idle[dev])
    power_range: dict[str, tuple[float, float]] = {}
    if req.range_devices and len(has_range) == len(set(req.range_devices)):
        for label in req.label_spans:
            got = [ranges[d][label] for d in sorted(has_range) if label in ranges[d]]
            if got:
                power_range[label] = (float(pd.Series([g[0] for g in got]).sum()),
                                      float(pd.Series([g[1] for g in got]).sum()))
    return Evidence(windows=_split_evidence(req, per_gpu), idle=out_idle or (np.empty(0), np.empty(0)),
                    idle_floors={d: floors[d] for d in req.idle_devices if d in floors}, power_range=power_range,
                    sets=req.windows, idle_within=req.idle_within)


def _concat(sets: dict[str, WindowSet]) -> WindowSet | None:
    """All window sets as one (groups renumbered one after the other): one integral per column."""
    if not sets:
        return None
    offsets = np.cumsum([0, *(w.n for w in sets.values())])
    return WindowSet(np.concatenate([w.a for w in sets.values()]), np.concatenate([w.b for w in sets.values()]),
                     np.concatenate([w.codes + o for w, o in zip(sets.values(), offsets, strict=False)]),
                     int(offsets[-1]))


def _split_evidence(req: EvidenceRequest, per_gpu: dict[str, dict[str, np.ndarray]]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    start = 0
    for name, w in req.windows.items():
        per_device = [{k: v[start:start + w.n] for k, v in per_gpu[d].items()} for d in req.gpus if d in per_gpu]
        out[name] = bottleneck.combine_evidence(per_device, np.bincount(w.codes, weights=w.b - w.a, minlength=w.n))
        start += w.n
    return out


def _label_power_range(df: pd.DataFrame, col: str, spans: dict[str, tuple[np.ndarray, np.ndarray]]
                       ) -> tuple[dict[str, tuple[float, float]], bool]:
    """Per label, the lowest and highest ``col`` reading of the device inside the label's span
    (``spans``: sorted, disjoint ``[s0_i, s1_i]``): the readings of each span are a range of the
    sorted samples, reduced with ``np.minimum.reduceat`` / ``np.maximum.reduceat``."""
    if col not in df.columns:
        return {}, False
    t = df[schema.T].to_numpy(float)
    v = df[col].to_numpy(float)
    ok = ~(np.isnan(t) | np.isnan(v))
    if not ok.all():
        t, v = t[ok], v[ok]
    if not _is_sorted(t):
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
    out: dict[str, tuple[float, float]] = {}
    for label, (s0, s1) in spans.items():
        lo, hi = np.searchsorted(t, s0, "left"), np.searchsorted(t, s1, "right")
        keep = hi > lo
        if not keep.any():
            continue
        # reduceat over [lo_0, hi_0), [hi_0, lo_1), [lo_1, hi_1), ...: the spans are the even entries
        edges = np.ravel(np.column_stack([lo[keep], hi[keep]]))
        if edges[-1] == len(t):
            edges = edges[:-1]
        out[label] = (float(np.minimum.reduceat(v, edges)[0::2].min()),
                      float(np.maximum.reduceat(v, edges)[0::2].max()))
    return out, len(t) > 0


def label_spans(labels: Mapping[str, LabelEnergy]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each label's merged span from its segments (``LabelEnergy.segments``)."""
    return {k: merge_intervals(le.segments["t_start"].to_numpy(float), le.segments["t_end"].to_numpy(float))
            for k, le in labels.items()}
