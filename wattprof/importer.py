"""Build or extend a run from logs a user already has (``wattprof import``).

Each import adds one source to the run (samples or steps), so a run can hold an NVML trace, an
nvidia-smi CSV and a GPM series side by side; analysis picks the best source per device.
"""

from __future__ import annotations

import os
import re
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


@dataclass
class ImportOptions:
    """Options of format readers (CLI: --fields, --utc-offset, --device, --label)."""

    fields: list[str] | None = None
    utc_offset_h: float = 0.0
    device: str = "gpu:0"
    label: str | None = None


def _nvidia_smi_samples(path: Path, opts: ImportOptions) -> tuple[pd.DataFrame, dict[str, dict], list[str]]:
    from .formats.nvidia_smi_csv import parse_csv

    r = parse_csv(path, fields=opts.fields, utc_offset_h=opts.utc_offset_h)
    for info in r.devices.values():
        info.setdefault("kind", "gpu")
        info["power_source"] = (f"measured: nvidia-smi power readings imported from {path.name} "
                                "(power.draw = 1 s trailing mean; power.draw.instant where logged); no energy counter")
    return r.samples, r.devices, list(r.warnings)


def _gpm_samples(path: Path, opts: ImportOptions) -> tuple[pd.DataFrame, dict[str, dict], list[str]]:
    from .formats.gpm_csv import read_gpm_csv

    df = read_gpm_csv(path, device=opts.device)
    return df, {d: {"gpm": f"imported from {path.name}"} for d in df["device"].unique()}, []


SampleReader = Callable[[Path, ImportOptions], tuple[pd.DataFrame, dict[str, dict], list[str]]]

SAMPLE_FORMATS: dict[str, SampleReader] = {
    "nvml-trace-csv": lambda p, o: _nvml_trace_samples(p),
    "nvidia-smi-csv": _nvidia_smi_samples,
    "gpm-csv": _gpm_samples,
}
STEP_FORMATS = ("jsonl", "vllm-bench")


def detect_samples_format(path: Path) -> str:
    from .formats import gpm_csv, nvidia_smi_csv

    with path.open(errors="replace") as f:
        head = f.readline()
    cols = head.strip().split(",")
    found = []
    if "t" in cols and "energy_mj" in cols:
        found.append("nvml-trace-csv")
    if gpm_csv.sniff(path):
        found.append("gpm-csv")
    if nvidia_smi_csv.sniff(path):
        found.append("nvidia-smi-csv")
    if len(found) == 1:
        return found[0]
    why = "matches several formats" if found else "cannot tell the samples format from the header"
    raise InputError(f"{why}; pass --samples-format ({', '.join(SAMPLE_FORMATS)})", path=str(path), line=1)


def detect_steps_format(path: Path) -> str:
    from .formats import vllm_bench

    if path.suffix == ".json" and vllm_bench.sniff(path):
        return "vllm-bench"
    return "jsonl"


def open_or_create(run_dir: Path, name: str | None = None) -> RunWriter:
    if (run_dir / META).is_file():
        return RunWriter.open_existing(run_dir)
    w = RunWriter.create(run_dir, name=name)
    w.meta["status"] = "imported"
    w.meta["started_at"] = None
    w.write_meta()
    return w


def import_samples(writer: RunWriter, path: str | Path, fmt: str | None = None,
                   opts: ImportOptions | None = None) -> ImportResult:
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found (expected a samples file)", path=str(p))
    fmt = fmt or detect_samples_format(p)
    if fmt not in SAMPLE_FORMATS:
        raise InputError(f"unknown samples format '{fmt}' (known: {', '.join(SAMPLE_FORMATS)})")
    df, devices, notes = SAMPLE_FORMATS[fmt](p, opts or ImportOptions())
    if df.empty:
        raise InputError("no samples in file", path=str(p))
    writer.add_devices(devices)
    key = writer.add_source(f"import-{fmt}", {"kind": "import", "format": fmt, "file": os.path.abspath(p),
                                              "devices": sorted(devices), "rows": len(df), "caveats": notes})
    writer.write_samples_frame(key, df)
    t0, t1 = float(df[schema.T].min()), float(df[schema.T].max())
    _widen_time_range(writer, t0, t1)
    return ImportResult(key, len(df), t0, t1, notes)


def _vllm_steps(path: Path, writer: RunWriter, opts: ImportOptions) -> tuple[pd.DataFrame, list[str], dict]:
    """Requests of a vLLM bench result as steps on the wall clock; the perf_counter->wall offset
    comes from ``date`` and, when the run has GPU samples, is refined from their activity."""
    from .formats.vllm_bench import read_vllm_bench

    bench = read_vllm_bench(path, utc_offset_h=opts.utc_offset_h)
    label = opts.label or "serve"
    notes = list(bench.caveats)
    info: dict = {"detailed": bench.detailed}
    if not bench.detailed:
        steps = bench.steps(label=label)
        return steps, notes, info
    from .analysis.clock_offset import refine_offset
    from .run import Run

    coarse = bench.coarse_offset
    info.update(offset_s=coarse, offset_uncertainty_s=bench.coarse_uncertainty, offset_method="date")
    samples = Run.open(writer.path).samples
    if not samples.empty:
        est = refine_offset(bench.steps(offset=0.0, label=label), samples, coarse, bounds=bench.offset_bounds,
                            coarse_uncertainty_s=bench.coarse_uncertainty)
        info.update(offset_s=est.offset_s, offset_uncertainty_s=est.uncertainty_s, offset_method=est.method,
                    offset_score=est.score)
        if est.note:  # the solver's numbers stay in the run's metadata; the notes say it in words
            info["offset_detail"] = est.note
        if est.method != "date":  # refined: the advice to refine no longer applies
            notes = [n for n in notes if "refine it against GPU activity" not in n]
        elif est.note:
            reason = re.sub(r" \([^()]*refresh period[^()]*\)$", "", est.note)
            notes.append(f"clock offset kept from the benchmark's 'date': matching the requests with GPU "
                         f"activity did not help ({reason})")
    else:
        notes.append("no samples in the run yet: clock offset from `date` only (import samples first to refine it "
                     "from GPU activity)")
    how = (f"matched with the GPU's {info['offset_method'].split(':', 1)[1]} samples"
           if info["offset_method"].startswith("xcorr:") else "from the benchmark's 'date'")
    notes.append(f"request times: placed on the wall clock to within +/- {info['offset_uncertainty_s']:.2f} s "
                 f"({how}; the client's perf_counter + {info['offset_s']:.3f} s)")
    return bench.steps(offset=info["offset_s"], label=label), notes, info


def import_steps(writer: RunWriter, path: str | Path, fmt: str | None = None,
                 opts: ImportOptions | None = None) -> ImportResult:
    from .formats.steps_jsonl import read_steps_jsonl

    p = Path(path)
    if not p.is_file():
        raise InputError("file not found (expected a steps file)", path=str(p))
    opts = opts or ImportOptions()
    fmt = fmt or detect_steps_format(p)
    if fmt not in STEP_FORMATS:
        raise InputError(f"unknown steps format '{fmt}' (known: {', '.join(STEP_FORMATS)})")
    notes: list[str] = []
    extra: dict = {}
    if fmt == "vllm-bench":
        steps, notes, extra = _vllm_steps(p, writer, opts)
    else:
        steps = read_steps_jsonl(p)
        if opts.label:
            steps["label"] = opts.label
    key = writer.add_source(f"import-steps-{fmt}", {"kind": "import", "format": f"steps-{fmt}",
                                                   "file": os.path.abspath(p), "rows": len(steps),
                                                   "caveats": notes, **extra})
    out = JsonlAppender(writer.path / f"steps-{key}.jsonl")
    try:
        for rec in steps.to_dict("records"):
            out.append({k: v for k, v in rec.items() if not _missing(v)})
    finally:
        out.close()
    return ImportResult(key, len(steps), float(steps["t_start"].min()), float(steps["t_end"].max()), notes)


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
