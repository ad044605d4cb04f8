"""Build or extend a run from logs a user already has (``wattprof import``).

Each import adds one source to the run (samples or steps), so a run can hold an NVML trace, an
nvidia-smi CSV and a GPM series side by side; analysis picks the best source per device.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import schema
from .clock import ManualClock
from .errors import InputError
from .repair import refuse_if_recording
from .run import META, JsonlAppender, RunWriter, read_meta


@dataclass
class ImportResult:
    source: str
    rows: int
    t_first: float | None
    t_last: float | None
    notes: list[str]


#: readings replayed from an NVML trace between two conversions to columns
CHUNK_ROWS = 65_536


def _nvml_trace_samples(path: Path) -> tuple[pd.DataFrame, dict[str, dict], list[str]]:
    """Run the real NVML collector over the trace, one read per recorded row (manual clock)."""
    from .collectors.nvml import NvmlReplayCollector

    clock = ManualClock()
    collector = NvmlReplayCollector(clock=clock, trace=str(path), start="trace")
    times = np.unique(np.concatenate([df["t"].to_numpy(dtype=float) for df in collector.nvml.trace.gpus.values()]))
    clock.set(float(times[0]))
    from .errors import CollectorError

    rows: list[dict] = []
    chunks: list[pd.DataFrame] = []  # columnar every CHUNK_ROWS readings: no Python object per sample kept
    try:
        devices = collector.open()
        try:
            for t in times.tolist():
                clock.set(t)
                rows.extend(collector.read())
                if len(rows) >= CHUNK_ROWS:
                    chunks.append(pd.DataFrame(rows))
                    rows = []
        finally:
            collector.close()
    except CollectorError as e:  # the trace lacks what NVML would answer (a column missing or garbled)
        raise InputError(f"cannot replay the trace through the NVML collector ({e}): a column it needs is "
                         "missing or misnamed in the header", path=str(path), line=1) from None
    trace_info = collector.nvml.trace.info or {}
    for info in devices.values():
        info["power_source"] = f"measured: NVML energy counter and power, imported from {path.name}"
        info.pop("replayed_from", None)
        # a real capture, not a replay: its own name and UUID where the trace says them, else none
        info["name"] = trace_info.get("name") or f"NVIDIA GPU (NVML trace {path.name})"
        info["uuid"] = trace_info.get("uuid")
        info["collector"] = "import"
        if trace_info.get("power_limit_mw"):
            info["power_limit_w"] = float(trace_info["power_limit_mw"]) / 1000.0
        if str(info.get("gpm", "")).startswith("unsupported: replayed"):
            info["gpm"] = "not in the trace"
    chunks.append(pd.DataFrame(rows))
    return (chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)), devices, \
        list(collector.nvml.trace.warnings)


@dataclass
class ImportOptions:
    """Options of format readers (CLI: --fields, --utc-offset, --device, --label)."""

    fields: list[str] | None = None
    utc_offset_h: float = 0.0
    device: str = "gpu:0"
    label: str | None = None
    #: Unix time of the first report of a neuron-monitor log (None: the file's mtime ends the log).
    start_s: float | None = None
    #: a steps file whose content was imported before replaces that import instead of being refused
    replace: bool = False

    def __post_init__(self) -> None:
        """Option values checked before anything is read or written (one-line errors, exit 2)."""
        from .formats.nvidia_smi_csv import check_utc_offset

        self.utc_offset_h = check_utc_offset(self.utc_offset_h)
        for what, text in (("--label", self.label), ("--device", self.device),
                           *(("--fields", f) for f in self.fields or [])):
            if text is None:
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError(f"{what} {text!r} is not valid text (undecodable bytes); expected UTF-8") from None


@contextlib.contextmanager
def transaction(run_dir: Path) -> Iterator[None]:
    """All of an import or none of it: on any error, a run this import created is removed, and an
    existing run gets back its meta.json and loses the files the import added."""
    existed = (run_dir / META).is_file()
    before = {p.name for p in run_dir.iterdir()} if existed else set()
    meta = (run_dir / META).read_bytes() if existed else b""
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            for p in run_dir.iterdir():
                if p.name not in before:
                    with contextlib.suppress(OSError):
                        p.unlink() if p.is_file() else shutil.rmtree(p)
            if (run_dir / META).read_bytes() != meta:
                (run_dir / META).write_bytes(meta)
        raise


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _same_content(writer: RunWriter, digest: str, path: Path, replace: bool) -> None:
    """Refuse a steps file whose content is already in the run (it would double steps and tokens),
    or, with ``replace``, remove the earlier import of it."""
    for key, src in list((writer.meta.get("sources") or {}).items()):
        if src.get("kind") != "import" or src.get("sha256") != digest:
            continue
        if not replace:
            raise InputError(f"this content was already imported into the run (source {key}, from "
                             f"{src.get('file')}): importing it again would double its steps and tokens; pass "
                             "--replace to replace that import", path=str(path))
        with contextlib.suppress(FileNotFoundError):
            (writer.path / f"steps-{key}.jsonl").unlink()
        del writer.meta["sources"][key]
        writer.write_meta()


def _check_inside_samples(writer: RunWriter, steps: pd.DataFrame, path: Path) -> None:
    """An import whose steps all fall outside the run's samples measures nothing: refuse it."""
    from .run import Run

    if steps.empty:
        return
    samples = Run.open(writer.path).samples
    if samples.empty or schema.T not in samples.columns:
        return
    t0, t1 = float(samples[schema.T].min()), float(samples[schema.T].max())
    outside = (steps["t_end"] < t0) | (steps["t_start"] > t1)
    if bool(outside.all()):
        raise InputError(f"all {len(steps)} steps lie outside the run's samples ({t0:.1f}-{t1:.1f}, steps "
                         f"{float(steps['t_start'].min()):.1f}-{float(steps['t_end'].max()):.1f}): no energy can be "
                         "attributed to them; check --utc-offset and the clocks; nothing imported", path=str(path))


def _nvidia_smi_samples(path: Path, opts: ImportOptions) -> tuple[pd.DataFrame, dict[str, dict], list[str]]:
    from .formats.nvidia_smi_csv import parse_csv

    r = parse_csv(path, fields=opts.fields, utc_offset_h=opts.utc_offset_h)
    for info in r.devices.values():
        info.setdefault("kind", "gpu")
        info["power_source"] = (f"measured: nvidia-smi power readings imported from {path.name} "
                                "(power.draw = 1 s trailing mean; power.draw.instant where logged); no energy counter")
    # the reader's device column is a categorical (memory); runs store plain strings
    return r.samples.assign(device=r.samples["device"].astype(str)), r.devices, list(r.warnings)


def _gpm_samples(path: Path, opts: ImportOptions) -> tuple[pd.DataFrame, dict[str, dict], list[str]]:
    from .formats.gpm_csv import read_gpm_csv

    df = read_gpm_csv(path, device=opts.device)
    return df, {d: {"gpm": f"imported from {path.name}"} for d in df["device"].unique()}, []


def _neuron_monitor_samples(path: Path, opts: ImportOptions) -> tuple[pd.DataFrame, dict[str, dict], list[str]]:
    from .neuron_import import neuron_monitor_samples

    return neuron_monitor_samples(path, start_s=opts.start_s)


SampleReader = Callable[[Path, ImportOptions], tuple[pd.DataFrame, dict[str, dict], list[str]]]

SAMPLE_FORMATS: dict[str, SampleReader] = {
    "nvml-trace-csv": lambda p, o: _nvml_trace_samples(p),
    "nvidia-smi-csv": _nvidia_smi_samples,
    "gpm-csv": _gpm_samples,
    "neuron-monitor-jsonl": _neuron_monitor_samples,
}
STEP_FORMATS = ("jsonl", "vllm-bench", "otlp-json")


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
    if head.lstrip().startswith("{"):
        from .neuron_import import sniff as neuron_sniff

        if neuron_sniff(path):
            found.append("neuron-monitor-jsonl")
    if len(found) == 1:
        return found[0]
    why = "matches several formats" if found else "cannot tell the samples format from the header"
    raise InputError(f"{why}; pass --samples-format ({', '.join(SAMPLE_FORMATS)})", path=str(path), line=1)


def detect_steps_format(path: Path) -> str:
    from .formats import otlp_json, vllm_bench

    if path.suffix == ".json" and vllm_bench.sniff(path):
        return "vllm-bench"
    if otlp_json.sniff(path):
        return "otlp-json"
    return "jsonl"


def open_or_create(run_dir: Path, name: str | None = None) -> RunWriter:
    if (run_dir / META).is_file():
        refuse_if_recording(run_dir, read_meta(run_dir), "import into it")  # its recorder rewrites meta.json
        return RunWriter.open_existing(run_dir)
    w = RunWriter.create(run_dir, name=name)
    w.meta["status"] = "imported"
    w.meta["started_at"] = None
    w.write_meta()
    return w


def discard_if_empty(writer: RunWriter) -> bool:
    """Remove a run this import created when nothing was imported into it (the input was
    rejected): no empty run is left behind. True when removed."""
    p = writer.path
    try:
        entries = [e.name for e in p.iterdir()]
    except OSError:
        return False
    if writer.meta.get("status") != "imported" or set(entries) - {META}:
        return False
    try:
        (p / META).unlink()
        p.rmdir()
    except OSError:
        return False
    return True


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
                    offset_score=est.score, offset_signals=list(est.signals))
        if est.note:  # the solver's numbers stay in the run's metadata; the notes say it in words
            info["offset_detail"] = est.note
        # refinement ran (kept or not): the advice to refine no longer applies
        notes = [n for n in notes if "refine it against GPU activity" not in n]
        if est.method == "date" and est.note:
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


def _otlp_steps(path: Path) -> tuple[pd.DataFrame, list[str], dict]:
    """OTLP JSON spans (the Collector's file exporter) -> model-call and tool steps, with their tasks."""
    from .formats.genai import SEMCONV_VERSION, map_spans
    from .formats.otlp_json import read_otlp_json
    from .formats.steps_jsonl import steps_frame

    f = read_otlp_json(path)
    m = map_spans(f.spans)
    if not m.steps:
        raise InputError("no GenAI model-call or tool spans (gen_ai.operation.name chat, text_completion, "
                         "generate_content, embeddings, execute_tool) in file", path=str(path))
    notes = f.problems[:5] + ([f"... {len(f.problems) - 5} more span problems"] if len(f.problems) > 5 else [])
    return steps_frame(m.steps), notes + m.flags, {"semconv": f"gen_ai {SEMCONV_VERSION}", "spans": len(f.spans),
                                                   "tasks": m.tasks}


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
    extra: dict = {"sha256": _sha256(p)}
    _same_content(writer, extra["sha256"], p, opts.replace)
    if fmt == "vllm-bench":
        steps, notes, more = _vllm_steps(p, writer, opts)
        extra.update(more)
    elif fmt == "otlp-json":
        steps, notes, more = _otlp_steps(p)
        extra.update(more)
    else:
        steps = read_steps_jsonl(p)
        if opts.label:
            steps["label"] = opts.label
    _check_inside_samples(writer, steps, p)
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
