"""Fuzz targets shared by tests/fuzz (a few hundred examples each, in CI) and benchmarks/fuzz.py
(10,000 each): every reader of outside input, the inputs that break it, and what it may raise.

Inputs are mutations of real captures (``tests/fixtures``): lines dropped, duplicated or cut,
fields replaced by hostile tokens (NaN, 1e999, ``[N/A]``, huge numbers, deep JSON nesting, NUL,
non-UTF-8 bytes...), JSON values replaced, deleted or retyped at random paths, binary run files
truncated or overwritten. The property: a reader either parses its input or raises the error it
promises (:class:`~wattprof.errors.InputError`; for run directories also
:class:`~wattprof.errors.RunError`, or it drops the damage with a warning); never another
exception.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from wattprof.errors import InputError, RunError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("WATTPROF_FIXTURES", REPO / "tests" / "fixtures"))

#: Examples per target in the test suite: 50 by default, 200 with ``pytest --slow`` (which .ci/run
#: uses); ``WATTPROF_FUZZ_EXAMPLES`` overrides both. ``benchmarks/fuzz.py --examples 10000`` at length.
DEFAULT_EXAMPLES, THOROUGH_EXAMPLES = 50, 200
CI_EXAMPLES = int(os.environ.get("WATTPROF_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))


def fuzz_settings(examples: int = CI_EXAMPLES, **kw: Any) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck), **kw)


# ---- hostile pieces ---------------------------------------------------------------------------------

TOKENS = [
    "", " ", ",", ", ", "\n", "\r\n", "\t", '"', "'", "{", "}", "[", "]", ":", "null", "true", "false",
    "NaN", "nan", "inf", "-inf", "Infinity", "-Infinity", "1e309", "-1e309", "1e-320", "-0", "0", "-1", "-1.5",
    "9" * 40, "1" + "0" * 400, "0x", "0xZZ", "0x" + "f" * 40, "[N/A]", "[Not Supported]", "[Unknown Error]",
    "N/A", " W", " MiB", " MHz", " %", " kW", "W", "%", "é", "\u202e", "\ufeff", "\x00", "\x7f", "𝔘", "1,2",
    "2026/11/22 11:25:40.970", "2026/13/45 99:99:99.999", "9999/12/31 23:59:59.999", "0000/01/01 00:00:00.000",
    "20250101-120000", "2025-01-01T12:00:00", "[" * 3000, "{\"a\":" * 3000, "timestamp", "index",
    "power.draw [W]", "power.draw [kW]", "t_start", "t_end", "tokens", "label",
]
_BYTES = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\x80", b"\xed\xa0\x80"]  # not UTF-8


@st.composite
def mutated_text(draw: st.DrawFn, base: str, *, max_ops: int = 6) -> bytes:
    """``base`` with up to ``max_ops`` mutations of lines, fields and bytes."""
    lines = base.splitlines(keepends=True)
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.sampled_from(["del_line", "dup_line", "swap", "cut", "field", "insert", "replace_line",
                                   "blank", "reorder_fields"]))
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        if op == "del_line":
            del lines[i]
        elif op == "dup_line":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "cut":  # the file ends mid-line
            text = "".join(lines)
            k = draw(st.integers(0, len(text)))
            lines = text[:k].splitlines(keepends=True)
        elif op in ("field", "reorder_fields"):
            sep = "," if "," in lines[i] else " "
            fields = lines[i].rstrip("\r\n").split(sep)
            if op == "field":
                j = draw(st.integers(0, max(len(fields) - 1, 0)))
                tok = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=12)))
                if fields:
                    fields[j] = draw(st.sampled_from([tok, fields[j] + tok, tok + fields[j], " " + tok]))
                else:
                    fields = [tok]
            else:
                fields = draw(st.permutations(fields)) if len(fields) < 30 else fields[::-1]
            lines[i] = sep.join(fields) + "\n"
        elif op == "insert":
            pos = draw(st.integers(0, len(lines[i])))
            tok = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=20)))
            lines[i] = lines[i][:pos] + tok + lines[i][pos:]
        elif op == "replace_line":
            lines[i] = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=60))) + "\n"
        elif op == "blank":
            lines.insert(i, draw(st.sampled_from(["\n", "   \n", "\r\n"])))
    data = "".join(lines).encode("utf-8", errors="surrogatepass")
    if draw(st.integers(0, 9)) == 0:  # sometimes: bytes that are not UTF-8
        k = draw(st.integers(0, len(data)))
        data = data[:k] + draw(st.sampled_from(_BYTES)) + data[k:]
    return data


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=16),
    st.sampled_from(["20250101-120000", "x", "", "1", "NaN", "[N/A]", "train", "gpu:0"]),
    st.sampled_from([0, 1, -1, 0.5, -0.0, 1e308, 2**63, 1e-300, 10**400, -(10**400)]),
    # in range for JSON, out of range for what they stand for: milliseconds, 1e300, year 2100+
    st.sampled_from([1.7e12, 1795346740123, 1e300, -1e300, -1e20, 4102444801.0, 1e15 + 1, "\ud800", "\udfff"]),
)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def _paths(obj: Any, prefix: tuple = (), out: list | None = None, limit: int = 400) -> list[tuple]:
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    out.append(prefix)
    if isinstance(obj, dict):
        for k, v in obj.items():
            _paths(v, prefix + (k,), out, limit)
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:20]):
            _paths(v, prefix + (i,), out, limit)
    return out


def _get(obj: Any, path: tuple) -> Any:
    for k in path:
        obj = obj[k]
    return obj


@st.composite
def mutated_json(draw: st.DrawFn, base: Any, *, max_ops: int = 4) -> Any:
    """A deep copy of ``base`` with values replaced, deleted, retyped or added at random paths."""
    obj = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(0, max_ops))):
        paths = _paths(obj)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "delete", "add", "stringify", "negate", "empty", "nest"]))
        if not path:
            if op == "replace":
                obj = draw(JSON_VALUES)
            continue
        parent, key = _get(obj, path[:-1]), path[-1]
        value = parent[key]
        if op == "replace":
            parent[key] = draw(JSON_VALUES)
        elif op == "delete":
            del parent[key]
        elif op == "add":
            if isinstance(value, dict):
                value[draw(st.text(max_size=8))] = draw(JSON_VALUES)
            elif isinstance(value, list):
                value.insert(draw(st.integers(0, len(value))), draw(JSON_VALUES))
        elif op == "stringify":
            parent[key] = str(value)
        elif op == "negate" and isinstance(value, (int, float)) and not isinstance(value, bool):
            parent[key] = -value
        elif op == "empty":
            parent[key] = type(value)() if isinstance(value, (list, dict, str)) else None
        elif op == "nest":
            parent[key] = [value]
    return obj


def dumps(obj: Any) -> str:
    """JSON as Python writes it, NaN and Infinity included (what a careless producer emits)."""
    return json.dumps(obj, allow_nan=True)


# ---- targets ------------------------------------------------------------------------------------------

@dataclass
class Target:
    name: str
    strategy: st.SearchStrategy
    #: parse the input (``data``), using ``work`` (an empty directory) for files
    parse: Callable[[Any, Path], Any]
    allowed: tuple[type[BaseException], ...] = (InputError,)


@dataclass
class Outcome:
    kind: str  # "parsed" | "rejected" | "pending" (a known bug, fix pending) | "unexpected"
    error: BaseException | None = None
    trace: str = ""


#: Bugs these fuzzers found whose fix is pending outside tests/ (the diffs are in
#: docs/reliability.md; tests/fuzz/test_fuzz_regressions.py reproduces each as a strict xfail).
#: Per target: (exception class name, text of the traceback that places it). The property tests
#: count these as "pending" instead of failing, so that they keep looking for new bugs. Remove an
#: entry together with its xfail marker when the fix lands.
PENDING: dict[str, list[tuple[str, str]]] = {}


def run_target(target: Target, data: Any, work: Path) -> Outcome:
    for p in work.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    try:
        target.parse(data, work)
    except target.allowed as e:
        return Outcome("rejected", e)
    except Exception as e:  # noqa: BLE001 - what the fuzzers look for
        trace = traceback.format_exc()
        for name, where in PENDING.get(target.name, []):
            if type(e).__name__ == name and where in trace:
                return Outcome("pending", e, trace)
        return Outcome("unexpected", e, trace)
    return Outcome("parsed")


def _write(work: Path, name: str, data: bytes | str) -> Path:
    p = work / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", errors="surrogatepass"))
    return p


def _head(path: Path, n: int) -> str:
    with path.open(encoding="utf-8") as f:
        return "".join(next(f, "") for _ in range(n))


def _corpus() -> dict[str, Any]:
    if not FIXTURES.is_dir():
        raise RuntimeError(f"fixtures not found at {FIXTURES} (set WATTPROF_FIXTURES)")
    h100 = FIXTURES / "nvidia-h100"
    vllm = json.loads((FIXTURES / "nvidia-h100-serve" / "vllm_bench_detailed.json").read_text())
    for k in ("input_lens", "output_lens", "ttfts", "itls", "start_times", "errors"):
        vllm[k] = vllm[k][:4]
    vllm["completed"], vllm["failed"] = 4, 0
    vllm["total_output_tokens"] = sum(vllm["output_lens"])
    vllm["itls"] = [x[:5] for x in vllm["itls"]]
    neuron = FIXTURES / "aws-neuron"
    return {
        "steps": _head(h100 / "steps.jsonl", 12),
        "step": json.loads(_head(h100 / "steps.jsonl", 1)),
        "smi": _head(h100 / "nvidia-smi-query-100ms.csv", 8),
        "smi_nounits": _head(h100 / "nvidia-smi-query-nounits-1s.csv", 6),
        "smi_fields": [f.split(" [")[0].strip() for f in _head(h100 / "nvidia-smi-query-100ms.csv", 1).split(",")],
        "gpm": _head(FIXTURES / "nvidia-h100-gpm" / "gpm_samples_500ms.csv", 8),
        "nvml": _head(h100 / "nvml_samples_10ms.csv", 12),
        "vllm": vllm,
        "neuron_lines": (neuron / "neuron_monitor_trn1_2xlarge_replay.jsonl").read_text().splitlines()[:4],
        "neuron_report": json.loads((neuron / "neuron_monitor_trn1_2xlarge_example.json").read_text()),
        "nvml_info": json.loads((h100 / "info.json").read_text()),
    }


def _steps_jsonl(c: dict) -> st.SearchStrategy:
    lines = st.lists(st.one_of(mutated_json(c["step"]).map(dumps), st.sampled_from(c["steps"].splitlines())),
                     min_size=0, max_size=6).map(lambda xs: ("\n".join(xs) + "\n").encode())
    return st.one_of(mutated_text(c["steps"]), lines)


def parse_steps(data: bytes, work: Path) -> Any:
    from wattprof.formats.steps_jsonl import read_steps_jsonl

    return read_steps_jsonl(_write(work, "steps.jsonl", data))


def _smi(c: dict) -> st.SearchStrategy:
    header = st.tuples(mutated_text(c["smi"]), st.none(), st.sampled_from([0.0, 2.0, -5.5]))
    noheader = st.tuples(mutated_text(c["smi_nounits"]),
                         st.one_of(st.just(c["smi_fields"]), st.permutations(c["smi_fields"]),
                                   st.lists(st.sampled_from([*c["smi_fields"], "bogus", ""]), max_size=8)),
                         st.sampled_from([0.0, 1.0]))
    return st.one_of(header, noheader)


def parse_smi(data: tuple, work: Path) -> Any:
    from wattprof.formats.nvidia_smi_csv import parse_csv, sniff

    text, fields, offset = data
    p = _write(work, "smi.csv", text)
    sniff(p)
    return parse_csv(p, fields=fields, utc_offset_h=offset)


def _smi_lines(c: dict) -> st.SearchStrategy:
    fields = st.one_of(st.just(c["smi_fields"]), mutated_text(",".join(c["smi_fields"]), max_ops=2)
                       .map(lambda b: b.decode("utf-8", "replace").split(",")))
    return st.tuples(fields, mutated_text(c["smi"] + c["smi_nounits"]))


def parse_smi_lines(data: tuple, work: Path) -> Any:
    from wattprof.formats.nvidia_smi_csv import LineParser

    fields, text = data
    lp = LineParser(fields, 0.0, source="stdin")
    return [lp.parse(line) for line in text.decode("utf-8", "replace").splitlines()]


def _neuron(c: dict) -> st.SearchStrategy:
    base = "\n".join(c["neuron_lines"]) + "\n"
    structured = st.lists(mutated_json(c["neuron_report"], max_ops=6).map(dumps), min_size=1, max_size=3) \
        .map(lambda xs: ("\n".join(xs) + "\n").encode())
    return st.one_of(mutated_text(base, max_ops=4), structured)


def parse_neuron(data: bytes, work: Path) -> Any:
    from wattprof.formats import neuron_monitor

    return neuron_monitor.read_neuron_monitor_jsonl(_write(work, "neuron.jsonl", data))


def _vllm(c: dict) -> st.SearchStrategy:
    return st.one_of(mutated_json(c["vllm"], max_ops=5).map(lambda o: dumps(o).encode()),
                     mutated_text(json.dumps(c["vllm"], indent=1), max_ops=3))


def parse_vllm(data: bytes, work: Path) -> Any:
    from wattprof.formats.vllm_bench import read_vllm_bench, sniff

    p = _write(work, "result.json", data)
    sniff(p)
    bench = read_vllm_bench(p)
    if bench.detailed:
        bench.offset_bounds  # noqa: B018 - computed properties must not fail on parsed input
        bench.coarse_uncertainty  # noqa: B018
    return bench.steps()


def parse_gpm(data: bytes, work: Path) -> Any:
    from wattprof.formats.gpm_csv import read_gpm_csv, sniff

    p = _write(work, "gpm.csv", data)
    sniff(p)
    return read_gpm_csv(p)


def parse_nvml_trace(data: bytes, work: Path) -> Any:
    from wattprof.formats.nvml_trace import read_nvml_trace

    return read_nvml_trace(_write(work, "trace.csv", data))


def _nvml_import(c: dict) -> st.SearchStrategy:
    """A trace CSV and what lies beside it: nothing, an ``info.json`` (the real sidecar mutated, or
    any JSON: another tool's file), a ``trace.info.json`` (named after the trace: read strictly),
    or a file that is not JSON."""
    sidecar = st.one_of(
        st.none(),
        st.tuples(st.sampled_from(["info.json", "trace.info.json"]), st.one_of(
            mutated_json(c["nvml_info"], max_ops=4).map(lambda o: dumps(o).encode()),
            JSON_VALUES.map(lambda o: dumps(o).encode()),
            st.sampled_from([b"[1]", b"{", b"", b"\xff\xfe", b"null", b'{"name": "\ud800"}']))))
    return st.tuples(mutated_text(c["nvml"]), sidecar)


def import_nvml_trace(data: tuple, work: Path) -> Any:
    """The NVML-trace import path end to end: the reader, the sidecar, the real NVML collector over
    the replay backend, the run written (and no empty run left behind on a rejection)."""
    from wattprof.importer import ImportOptions, discard_if_empty, import_samples, open_or_create

    text, sidecar = data
    trace = _write(work, "trace.csv", text)
    if sidecar is not None:
        _write(work, sidecar[0], sidecar[1])
    writer = open_or_create(work / "run")
    try:
        return import_samples(writer, trace, "nvml-trace-csv", ImportOptions())
    except BaseException:
        discard_if_empty(writer)
        if (work / "run").exists():
            raise AssertionError("a rejected import left a run behind") from None
        raise


def _meta(c: dict) -> st.SearchStrategy:
    return st.deferred(lambda: mutated_json(json.loads((run_templates()["final"] / "meta.json").read_text()),
                                            max_ops=5))


class BrokenPromise(Exception):
    """A reader returned something it promises never to return."""


def read_meta(meta: Any, work: Path) -> Any:
    """``Run.read_meta`` on a mutated ``meta.json`` of a real finished run, then its promise to
    the code that formats reports and nightly tables: every field of ``META_FIELDS`` has its type,
    times are Unix seconds a date can be made of, ranges hold, texts encode as UTF-8."""
    import datetime as dt

    from wattprof.run import META_FIELDS, META_RANGES, Run

    run = work / "run"
    run.mkdir()
    (run / "meta.json").write_bytes(dumps(meta).encode("utf-8", errors="surrogatepass"))
    warnings: list[str] = []
    m = Run.read_meta(run, warnings)
    for key, types in META_FIELDS.items():
        v = m.get(key)
        if key in m and not (isinstance(v, types) and not isinstance(v, bool)):
            raise BrokenPromise(f"{key} is {type(v).__name__}")
        lo_hi = META_RANGES.get(key)
        if lo_hi is not None and v is not None and not lo_hi[0] <= v <= lo_hi[1]:
            raise BrokenPromise(f"{key} = {v!r} out of range")
    for key in ("started_at", "ended_at"):
        if m.get(key) is not None:
            dt.datetime.fromtimestamp(m[key], dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    for info in m["devices"].values():
        limit = info.get("power_limit_w")
        if limit is not None and not (isinstance(limit, (int, float)) and 0 < limit < 1e7):
            raise BrokenPromise(f"power_limit_w = {limit!r}")
    json.dumps(m, default=str).encode("utf-8")
    return m


def read_meta_and_report(meta: Any, work: Path) -> Any:
    """A real finished run with a mutated ``meta.json``: read, and rendered as text, Markdown and
    JSON (dates, durations, names all come from meta.json; HTML shares their formatting and adds
    plots, ~4 s each: left to tests/test_reports_render.py). ~0.3 s an example."""
    from wattprof.reports import RENDERERS
    from wattprof.reports.build import build_report
    from wattprof.run import Run

    run = work / "run"
    shutil.copytree(run_templates()["final"], run)
    (run / "meta.json").write_bytes(dumps(meta).encode("utf-8", errors="surrogatepass"))
    rep = build_report(Run.open(run), bottlenecks=False)
    for fmt in ("text", "markdown", "json"):
        RENDERERS[fmt](rep).encode("utf-8")  # what writing it to a file or a terminal does
    return rep


#: Option values a user may type: numbers out of range or not numbers, text that is not text.
OPTION_VALUES = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e300", "-1e20", "1e309", "0", "-0", "14", "15", "-12.5", "3",
                     "", " ", "x", "1,5", "0x10", "\udced\udca0\udc80", "\ud800", "é", "median:0", "median:-1",
                     "median:1e300", "median:x", "last", "gpu:0", "gpu:", ":", "=", "a=b", "aws:nowhere",
                     "ZZZ", "USA/nowhere", "1" + "0" * 400]),
    st.text(max_size=12),
    st.floats().map(repr),
)
_OPTIONS = {
    "import": ["--utc-offset", "--label", "--device", "--fields", "--samples-format", "--steps-format", "--name"],
    "report": ["--intensity", "--pue", "--region", "--country", "--format"],
    "nightly": ["--threshold", "--baseline", "--metric", "--label", "--benchmark", "--format"],
}


def _cli(c: dict) -> st.SearchStrategy:
    return st.sampled_from(sorted(_OPTIONS)).flatmap(lambda cmd: st.tuples(
        st.just(cmd), st.lists(st.tuples(st.sampled_from(_OPTIONS[cmd]), OPTION_VALUES), min_size=1, max_size=3)))


class CliCrash(Exception):
    """A command ended in an exception of its own instead of an exit status."""


def run_cli(data: tuple, work: Path) -> Any:
    """A command with hostile option values, in process (click's runner): it must end with an
    exit status (0, 1, 2 or 3) and at most one error line, never with an exception."""
    from click.testing import CliRunner

    from wattprof.cli import main

    cmd, opts = data
    args: list[str] = []
    for name, value in opts:
        args += [name, value]
    template = run_templates()["final"]
    if cmd == "import":
        steps = _write(work, "steps.jsonl", _corpus_cache()["steps"].splitlines()[0] + "\n")
        smi = _write(work, "smi.csv", _corpus_cache()["smi"])
        argv = ["import", str(work / "run"), "--samples", str(smi), "--steps", str(steps), *args]
    elif cmd == "report":
        argv = ["report", str(template), *args]
    else:
        argv = ["nightly", str(template), str(template), *args]
    result = CliRunner().invoke(main, argv, catch_exceptions=True)
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        raise exc
    if result.exit_code not in (0, 1, 2, 3):
        raise CliCrash(f"exit status {result.exit_code}: {result.output[-300:]}")
    return result


_CORPUS: dict[str, Any] = {}


def _corpus_cache() -> dict[str, Any]:
    if not _CORPUS:
        _CORPUS.update(_corpus())
    return _CORPUS


# ---- run directories -------------------------------------------------------------------------------------

_TEMPLATES: dict[str, Path] = {}


def run_templates() -> dict[str, Path]:
    """Two small real runs, made once per process: ``live`` (still recording: Arrow streams) and
    ``final`` (finalised: Parquet), each with steps and events."""
    if _TEMPLATES:
        return _TEMPLATES
    from wattprof.clock import ManualClock
    from wattprof.collectors.host import HostCollector
    from wattprof.collectors.nvml import NvmlReplayCollector
    from wattprof.recording.recorder import Recorder
    from wattprof.run import JsonlAppender, RunWriter

    root = Path(tempfile.mkdtemp(prefix="wattprof-fuzz-runs-"))
    for kind in ("live", "final"):
        clock = ManualClock()
        nv = NvmlReplayCollector(clock=clock, devices=2, start="trace")
        clock.set(nv.nvml.trace.t_first + 10)
        w = RunWriter.create(root / kind, name=f"fuzz-{kind}", tags={"k": "v"}, clock_time=clock.time())
        rec = Recorder(w, [nv, HostCollector(clock=clock)], interval=0.1, clock=clock)
        rec.start(background=False)
        steps = JsonlAppender(root / kind / "steps-0-1.jsonl")
        for i in range(30):
            clock.advance(0.1)
            rec.sample_once()
            if i % 10 == 9:
                rec.flush()
                steps.append({"step": i, "t_start": clock.time() - 0.8, "t_end": clock.time(), "tokens": 100,
                              "label": "train" if i < 20 else "eval"})
        steps.close()
        w.event("marker", "fuzz template")
        rec.stop()
        if kind == "final":
            w.finalize(status="finished", exit_code=0, ended_at=clock.time())
        else:
            w.events().close()
            for s in w._streams.values():
                s._drain()
    _TEMPLATES.update(live=root / "live", final=root / "final")
    return _TEMPLATES


@st.composite
def mutated_bytes(draw: st.DrawFn, size: int, *, max_ops: int = 4) -> list[tuple]:
    """Damage to a binary file of ``size`` bytes: a list of operations, applied by :func:`damage`."""
    ops = []
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(["truncate", "flip", "overwrite", "delete", "insert", "zero"]))
        pos = draw(st.integers(0, max(size - 1, 0)))
        n = draw(st.integers(1, 64))
        ops.append((op, pos, n, draw(st.binary(min_size=1, max_size=16))))
    return ops


def damage(data: bytes, ops: list[tuple]) -> bytes:
    b = bytearray(data)
    for op, pos, n, junk in ops:
        pos = min(pos, len(b))
        if op == "truncate":
            del b[pos:]
        elif op == "flip" and pos < len(b):
            b[pos] ^= junk[0] or 0xFF
        elif op == "overwrite":
            b[pos:pos + len(junk)] = junk
        elif op == "delete":
            del b[pos:pos + n]
        elif op == "insert":
            b[pos:pos] = junk
        elif op == "zero":
            b[pos:pos + n] = bytes(len(b[pos:pos + n]))
    return bytes(b)


@st.composite
def damaged_run(draw: st.DrawFn) -> dict:
    """Which template, and per file of it: kept, deleted, damaged (bytes) or rewritten (JSON)."""
    templates = run_templates()
    kind = draw(st.sampled_from(sorted(templates)))
    plan: dict[str, Any] = {}
    files = sorted(p.name for p in templates[kind].iterdir() if not p.name.startswith("."))
    chosen = draw(st.lists(st.sampled_from(files), min_size=1, max_size=3, unique=True))
    for name in chosen:
        path = templates[kind] / name
        if name == "meta.json":
            how = draw(st.sampled_from(["json", "json", "bytes", "delete"]))
        elif name.endswith(".jsonl"):
            how = draw(st.sampled_from(["text", "text", "bytes", "delete", "json_line"]))
        else:
            how = draw(st.sampled_from(["bytes", "bytes", "bytes", "delete", "empty"]))
        if how == "json":
            plan[name] = ("write", dumps(draw(mutated_json(json.loads(path.read_text()), max_ops=5))).encode())
        elif how == "text":
            plan[name] = ("write", draw(mutated_text(path.read_text(), max_ops=4)))
        elif how == "json_line":
            first = json.loads(path.read_text().splitlines()[0])
            plan[name] = ("append", (dumps(draw(mutated_json(first, max_ops=4))) + "\n").encode())
        elif how == "bytes":
            plan[name] = ("damage", draw(mutated_bytes(path.stat().st_size)))
        else:
            plan[name] = (how, None)
    return {"kind": kind, "plan": plan}


def make_damaged_run(spec: dict, work: Path) -> Path:
    src = run_templates()[spec["kind"]]
    run = work / "run"
    shutil.copytree(src, run)
    for name, (how, arg) in spec["plan"].items():
        p = run / name
        if how == "delete":
            p.unlink()
        elif how == "empty":
            p.write_bytes(b"")
        elif how == "write":
            p.write_bytes(arg)
        elif how == "append":
            with p.open("ab") as f:
                f.write(arg)
        elif how == "damage":
            p.write_bytes(damage(p.read_bytes(), arg))
    return run


def read_run(spec: dict, work: Path) -> Any:
    from wattprof.run import Run

    r = Run.open(make_damaged_run(spec, work))
    _ = r.samples, r.steps, r.events, r.status, r.name, r.devices
    return r


def report_run(spec: dict, work: Path) -> Any:
    from wattprof.reports import RENDERERS
    from wattprof.reports.build import build_report

    rep = build_report(read_run(spec, work))
    for fmt in ("text", "json"):
        RENDERERS[fmt](rep)
    return rep


def targets() -> dict[str, Target]:
    c = _corpus()
    return {t.name: t for t in [
        Target("steps-jsonl", _steps_jsonl(c), parse_steps),
        Target("nvidia-smi-csv", _smi(c), parse_smi),
        Target("nvidia-smi-lines", _smi_lines(c), parse_smi_lines),
        Target("neuron-monitor", _neuron(c), parse_neuron),
        Target("vllm-bench", _vllm(c), parse_vllm),
        Target("gpm-csv", mutated_text(c["gpm"]), parse_gpm),
        Target("nvml-trace-csv", mutated_text(c["nvml"]), parse_nvml_trace),
        Target("nvml-trace-import", _nvml_import(c), import_nvml_trace),
        Target("meta-reader", _meta(c), read_meta, (InputError, RunError)),
        Target("meta-report", _meta(c), read_meta_and_report, (InputError, RunError)),
        Target("cli-options", _cli(c), run_cli, ()),
        Target("run-dir", damaged_run(), read_run, (InputError, RunError)),
        Target("run-dir-report", damaged_run(), report_run, (InputError, RunError)),
    ]}
