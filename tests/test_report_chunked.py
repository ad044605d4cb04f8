"""A report read one device at a time, in small Parquet batches, says exactly what the report of the
whole samples table says, on every real capture that becomes a run (the bounded-memory path of
benchmarks/storage.py must not change a figure)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import FIXTURES

from wattprof.importer import ImportOptions, import_samples, import_steps, open_or_create, transaction
from wattprof.reports import json as json_report
from wattprof.reports.build import build_report
from wattprof.run import Run
from wattprof.run.scan import NotScannable, SampleScan

H100 = FIXTURES / "nvidia-h100"
GPM = FIXTURES / "nvidia-h100-gpm"
SERVE = FIXTURES / "nvidia-h100-serve"
NEURON = FIXTURES / "aws-neuron"

#: (name, [(kind, file, format)]): every capture that imports into a run, alone or with its step log
CAPTURES = [
    ("h100-nvml", [("samples", H100 / "nvml_samples_10ms.csv", None), ("steps", H100 / "steps.jsonl", None)]),
    ("h100-smi-100ms", [("samples", H100 / "nvidia-smi-query-100ms.csv", None),
                        ("steps", H100 / "steps.jsonl", None)]),
    ("h100-smi-1s", [("samples", H100 / "nvidia-smi-query-nounits-1s.csv", "fields"),
                     ("steps", H100 / "steps.jsonl", None)]),
    ("h100-gpm", [("samples", GPM / "nvml_samples_10ms.csv", None), ("samples", GPM / "gpm_samples_500ms.csv", None),
                  ("steps", GPM / "steps.jsonl", None)]),
    ("h100-gpm-smi", [("samples", GPM / "nvidia-smi-query-100ms.csv", None), ("steps", GPM / "steps.jsonl", None)]),
    ("h100-serve", [("samples", SERVE / "nvml_samples_10ms.csv", None),
                    ("samples", SERVE / "nvidia-smi-query-100ms.csv", None),
                    ("steps", SERVE / "requests_wallclock.jsonl", None)]),
    *[(f"neuron-{p.stem}", [("samples", p, None)]) for p in sorted(NEURON.glob("neuron_monitor_*_replay.jsonl"))],
]

SMALL_BATCH = 97  # rows per read: every capture spans many batches and several files' row groups


def _fields() -> list[str]:
    """The field list of the header-less capture: the fields of the one with a header."""
    header = (H100 / "nvidia-smi-query-100ms.csv").read_text().splitlines()[0]
    return [h.strip().split(" [")[0] for h in header.split(",")]


def _make_run(root: Path, name: str, parts: list[tuple[str, Path, str | None]]) -> Path:
    run = root / name
    with transaction(run):
        w = open_or_create(run, name=name)
        for kind, path, needs in parts:
            opts = ImportOptions(fields=_fields()) if needs == "fields" else ImportOptions()
            fmt = "nvidia-smi-csv" if needs == "fields" else None
            (import_samples if kind == "samples" else import_steps)(w, path, fmt, opts)
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("captures")
    return {name: _make_run(root, name, parts) for name, parts in CAPTURES}


def _close(a: object, b: object, where: str = "") -> None:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), where
        else:
            assert a == pytest.approx(b, rel=1e-9, abs=1e-9), where
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("name", [name for name, _ in CAPTURES])
def test_chunked_report_equals_whole_table_report(runs, name):
    path = runs[name]
    scan = SampleScan.open(path)  # the run is scannable: no silent fallback to the whole table
    rows = max(len(scan.frame(d, [])) for d in scan.devices)
    batch = max(5, rows // 25)  # every device's rows span many reads
    whole = json.loads(json_report.render(build_report(Run.open(path), batch_rows=None)))
    chunked = json.loads(json_report.render(build_report(Run.open(path), batch_rows=batch)))
    assert whole["energy_j"] is not None and whole["devices"]
    _close(chunked, whole, name)


def test_device_frame_is_the_whole_tables_rows(runs):
    # two files hold gpu:0 (NVML and GPM): the frame interleaves them by time like the whole table
    path = runs["h100-gpm"]
    scan = SampleScan.open(path, SMALL_BATCH)
    assert len(list(path.glob("samples-*.parquet"))) == 2
    whole = Run.open(path).samples
    for dev in scan.devices:
        got = scan.frame(dev, scan.columns).reset_index(drop=True)
        want = whole[whole["device"] == dev].reset_index(drop=True)
        assert list(got["t"]) == list(want["t"])
        for c in scan.columns:
            if c not in ("t", "device"):
                assert got[c].equals(want[c].astype("float64")), c


def test_live_streams_and_odd_columns_take_the_whole_table_reader(runs, tmp_path):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    run = tmp_path / "odd"
    shutil.copytree(runs["h100-nvml"], run)
    (f,) = run.glob("samples-*.parquet")
    t = pq.read_table(f)
    pq.write_table(t.append_column("mystery", pa.array(["x"] * t.num_rows)), f)
    with pytest.raises(NotScannable):
        SampleScan.open(run)
    rep = build_report(Run.open(run))  # the whole-table reader drops the column and says so
    assert any("mystery" in w for w in rep.warnings)
    assert rep.energy_j == pytest.approx(build_report(Run.open(runs["h100-nvml"])).energy_j, rel=1e-12)


def _line_by_line(files: list[Path]):
    from wattprof.formats.steps_jsonl import normalize_step, steps_frame

    rows = [normalize_step(json.loads(line), f.name, n) for f in files
            for n, line in enumerate(f.read_text().splitlines(), 1) if line.strip()]
    return steps_frame(rows)


@pytest.mark.parametrize("name", [name for name, parts in CAPTURES if any(k == "steps" for k, _, _ in parts)])
def test_steps_read_column_wise_equal_the_line_by_line_reader(runs, name):
    import pandas as pd

    from wattprof.run.scan import read_steps_columnar

    files = sorted(runs[name].glob("steps-*.jsonl"))
    fast = read_steps_columnar(files)
    assert fast is not None, "these step logs need no line-by-line checks"
    pd.testing.assert_frame_equal(fast, _line_by_line(files), check_like=True)


@pytest.mark.parametrize("line, why", [
    ('{"t_start": 1.0e9, "t_end": 1.0e12}', "milliseconds"), ('{"t_start": 2.0e9, "t_end": 1.0e9}', "end before start"),
    ('{"t_start": 1.0e9, "t_end": 1.0e9, "tokens": -1}', "negative tokens"), ('{"t_start": 1.0e9}', "no end"),
    ('{"t_start": 1.0e9, "t_end": 1.0e9, "label": "caf\\u00e9"}', "non-ASCII text"), ('{"t_start": 1.0e9, "t_', "torn"),
    ('{"t_start": 1.0e9, "t_end": 1.0e9, "meta": {"a": 1}}', "nested"),
])
def test_steps_needing_checks_take_the_line_by_line_reader(tmp_path, line, why):
    from wattprof.run.scan import read_steps_columnar

    f = tmp_path / "steps-0-1.jsonl"
    f.write_text('{"t_start": 1.0e9, "t_end": 1.1e9, "tokens": 3, "phase": "a"}\n' + line + "\n")
    assert read_steps_columnar([f]) is None, why


@pytest.mark.parametrize("statistics", [True, False])
def test_device_ranges_from_row_group_statistics_equal_the_device_column(tmp_path, statistics):
    # row groups of one device are indexed from their statistics, mixed ones (and files written
    # without statistics) from the device column: the same ranges either way
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from wattprof.run.scan import _device_ranges

    devices = ["gpu:0"] * 25 + ["gpu:1"] * 7 + ["gpu:10"] * 30 + ["gpu:2"] * 3
    t = pa.table({"t": np.arange(len(devices), dtype=float), "device": devices})
    f = tmp_path / "samples-x.parquet"
    pq.write_table(t, f, row_group_size=10, write_statistics=statistics)
    got = _device_ranges(pq.ParquetFile(f, read_dictionary=["device"]), 4)
    want: dict[str, list[tuple[int, int]]] = {}
    start = 0
    for i in range(1, len(devices) + 1):
        if i == len(devices) or devices[i] != devices[start]:
            want.setdefault(devices[start], []).append((start, i))
            start = i
    assert got == want


@pytest.mark.parametrize("name", ["h100-gpm", "h100-serve", "neuron-neuron_monitor_trn1_2xlarge_replay"])
def test_long_run_path_one_device_at_a_time_reading_ahead_equals_whole_table(runs, name, monkeypatch):
    # long runs take devices one by one, the next one read on a thread while this one is reduced
    from wattprof.reports import sample_digest

    monkeypatch.setattr(sample_digest, "PARALLEL_MAX_ROWS", 0)
    path = runs[name]
    whole = json.loads(json_report.render(build_report(Run.open(path), batch_rows=None)))
    ahead = json.loads(json_report.render(build_report(Run.open(path), batch_rows=max(5, len(
        SampleScan.open(path).frame(SampleScan.open(path).devices[0], [])) // 7))))
    _close(ahead, whole, name)
