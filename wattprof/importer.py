"""Build or extend a run from logs a user already has (``wattprof import``).

Each import adds one source to the run (samples or steps), so a run can hold an NVML trace, an
nvidia-smi CSV and a GPM series side by side; analysis picks the best source per device.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import schema
from .clock import ManualClock
from .errors import InputError
from .run import META, JsonlAppender, RunWriter


@dataclass
class ImportResult:
    source: str
    rows: int
    t_first: float | None
    t_last: float | None
    notes: list[str]


def _nvml_trace_samples(path: Path) -> tuple[pd.DataFrame, dict[str, dict], list[str]]:
    """Run the real NVML collector over the trace, one read per recorded row (manual clock)."""
    from .collectors.nvml import NvmlReplayCollector

    clock = ManualClock()
    collector = NvmlReplayCollector(clock=clock, trace=str(path), start="trace")
    times = sorted({float(t) for df in collector.nvml.trace.gpus.values() for t in df["t"]})
    clock.set(times[0])
    devices = collector.open()
    rows = []
    try:
        for t in times:
            clock.set(t)
            rows.extend(collector.read())
    finally:
        collector.close()
    for info in devices.values():
        info["power_source"] = f"measured: NVML energy counter and power, imported from {path.name}"
        info.pop("replayed_from", None)
    return pd.DataFrame(rows), devices, []


SampleReader = Callable[[Path], tuple[pd.DataFrame, dict[str, dict], list[str]]]

SAMPLE_FORMATS: dict[str, SampleReader] = {
    "nvml-trace-csv": _nvml_trace_samples,
}
STEP_FORMATS = ("jsonl",)


def detect_samples_format(path: Path) -> str:
    with path.open(errors="replace") as f:
        head = f.readline()
    cols = head.strip().split(",")
    if "t" in cols and "energy_mj" in cols:
        return "nvml-trace-csv"
    raise InputError("cannot tell the samples format from the header; pass --samples-format "
                     f"({', '.join(SAMPLE_FORMATS)})", path=str(path), line=1)


def open_or_create(run_dir: Path, name: str | None = None) -> RunWriter:
    if (run_dir / META).is_file():
        return RunWriter.open_existing(run_dir)
    w = RunWriter.create(run_dir, name=name)
    w.meta["status"] = "imported"
    w.meta["started_at"] = None
    w.write_meta()
    return w


def import_samples(writer: RunWriter, path: str | Path, fmt: str | None = None) -> ImportResult:
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found (expected a samples file)", path=str(p))
    fmt = fmt or detect_samples_format(p)
    if fmt not in SAMPLE_FORMATS:
        raise InputError(f"unknown samples format '{fmt}' (known: {', '.join(SAMPLE_FORMATS)})")
    df, devices, notes = SAMPLE_FORMATS[fmt](p)
    if df.empty:
        raise InputError("no samples in file", path=str(p))
    writer.add_devices(devices)
    key = writer.add_source(f"import-{fmt}", {"kind": "import", "format": fmt, "file": os.path.abspath(p),
                                              "devices": sorted(devices), "rows": len(df)})
    writer.write_samples_frame(key, df)
    t0, t1 = float(df[schema.T].min()), float(df[schema.T].max())
    _widen_time_range(writer, t0, t1)
    return ImportResult(key, len(df), t0, t1, notes)


def import_steps(writer: RunWriter, path: str | Path, fmt: str | None = None) -> ImportResult:
    from .formats.steps_jsonl import read_steps_jsonl

    p = Path(path)
    fmt = fmt or "jsonl"
    if fmt not in STEP_FORMATS:
        raise InputError(f"unknown steps format '{fmt}' (known: {', '.join(STEP_FORMATS)})")
    steps = read_steps_jsonl(p)
    key = writer.add_source(f"import-steps-{fmt}", {"kind": "import", "format": f"steps-{fmt}",
                                                   "file": os.path.abspath(p), "rows": len(steps)})
    out = JsonlAppender(writer.path / f"steps-{key}.jsonl")
    try:
        for rec in steps.to_dict("records"):
            out.append({k: v for k, v in rec.items() if not _missing(v)})
    finally:
        out.close()
    return ImportResult(key, len(steps), float(steps["t_start"].min()), float(steps["t_end"].max()), [])


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _widen_time_range(writer: RunWriter, t0: float, t1: float) -> None:
    m = writer.meta
    m["started_at"] = t0 if m.get("started_at") is None else min(m["started_at"], t0)
    m["ended_at"] = t1 if m.get("ended_at") is None else max(m["ended_at"], t1)
    writer.write_meta()


def describe(result: ImportResult) -> str:
    span = ""
    if result.t_first is not None and result.t_last is not None:
        span = f", {result.t_last - result.t_first:.1f} s"
    return f"{result.source}: {result.rows} rows{span}" + "".join(f"; {n}" for n in result.notes)


__all__ = ["import_samples", "import_steps", "open_or_create", "describe", "SAMPLE_FORMATS"]
