"""Issue 12, second pass: bad values that used to give tracebacks (or silently wrong energy).
Each case goes through the real CLI (or the reader) and must end in a one-line error naming the
file, line and field (exit 2), or in a flag: never a traceback, never an empty run left behind."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from conftest import H100, H100_SERVE, wattprof, wattprof_in_process

from wattprof.errors import InputError
from wattprof.formats.nvidia_smi_csv import parse_csv
from wattprof.formats.nvml_trace import read_nvml_trace
from wattprof.formats.steps_jsonl import read_steps_jsonl
from wattprof.run import Run


def _one_line_error(p, *words: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    err = [ln for ln in p.stderr.strip().splitlines() if ln.startswith("wattprof: error:")]
    assert len(err) == 1, p.stderr
    for w in words:
        assert w in err[0], (w, err[0])


def _nvml_trace(tmp_path, col: str, value: str, *, row: int = 5, gpu: bool = False, rows: int = 40):
    lines = (H100 / "nvml_samples_10ms.csv").read_text().splitlines()[: rows + 1]
    header = lines[0].split(",") + (["gpu"] if gpu else [])
    out = [",".join(header)]
    for i, line in enumerate(lines[1:]):
        f = line.split(",") + (["0"] if gpu else [])
        if i == row:
            f[header.index(col)] = value
        out.append(",".join(f))
    p = tmp_path / "trace.csv"
    p.write_text("\n".join(out) + "\n")
    return p


# ---- item 3: meta.json ranges ---------------------------------------------------------------------

@pytest.mark.parametrize("started_at", [1.7e12, 1e300])
def test_started_at_out_of_range_is_ignored_with_a_warning_in_every_report_and_nightly(tmp_path, started_at):
    """Item 3: `started_at` in milliseconds or 1e300 used to crash the text, Markdown and HTML
    reports and `nightly`; now the field is reset with a warning and everything reports."""
    run = tmp_path / "run"
    p = wattprof_in_process("import", str(run), "--samples", str(H100 / "nvidia-smi-query-100ms.csv"),
                 "--steps", str(H100 / "steps.jsonl"))
    assert p.returncode == 0, p.stderr
    meta = json.loads((run / "meta.json").read_text())
    meta["started_at"] = meta["ended_at"] = started_at
    (run / "meta.json").write_text(json.dumps(meta))
    for fmt in ("text", "markdown", "html", "json"):
        r = wattprof_in_process("report", str(run), "--format", fmt)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (fmt, r.stderr)
    assert "outside" in wattprof_in_process("report", str(run)).stdout
    n = wattprof_in_process("nightly", str(run), str(run))
    assert n.returncode == 0 and "Traceback" not in n.stderr, n.stderr
    assert "INSUFFICIENT-HISTORY" in n.stdout  # the run against itself: one run, no verdict
    assert Run.open(run).meta["started_at"] is None


# ---- item 4: the NVML-trace import path ----------------------------------------------------------

@pytest.mark.parametrize("col, value, gpu, words", [
    ("energy_mj", "", False, ["energy_mj is empty", ":7:"]),
    ("gpu", "inf", True, ["gpu is inf", ":7:"]),
    ("gpu", "", True, ["gpu is empty", ":7:"]),
    ("t", "inf", False, ["t is inf", ":7:"]),
    ("gpu", "2.5", True, ["gpu is 2.5"]),
])
def test_nvml_trace_bad_values_give_one_line_errors_and_leave_no_run(tmp_path, col, value, gpu, words):
    """Item 4: an empty energy_mj, gpu=inf, an empty gpu, t=inf gave tracebacks (or a silently
    dropped row) and left an empty run: now a one-line error with file and line, no run."""
    trace = _nvml_trace(tmp_path, col, value, gpu=gpu)
    run = tmp_path / "run"
    p = wattprof_in_process("import", str(run), "--samples", str(trace), "--report")
    _one_line_error(p, "trace.csv", *words)
    assert not run.exists()


def test_an_unrelated_info_json_beside_the_trace_is_ignored_and_said(tmp_path):
    """Item 4: an `info.json` beside the CSV that is not a trace sidecar (`[1]`, or another tool's
    object) is not read (it crashed with AttributeError); the import says it was ignored."""
    trace = _nvml_trace(tmp_path, "t", (H100 / "nvml_samples_10ms.csv").read_text().splitlines()[3].split(",")[0],
                        row=1)
    for junk in ("[1]", '{"model": "llama", "batch": 8}', '{"name": 5}'):
        (tmp_path / "info.json").write_text(junk)
        t = read_nvml_trace(trace)
        assert t.info == {}
        assert any("info.json" in w and "ignored" in w for w in t.warnings)
    (tmp_path / "info.json").write_text("[1]")
    run = tmp_path / "run"
    p = wattprof_in_process("import", str(run), "--samples", str(trace), "--report")
    assert p.returncode == 0, p.stderr
    assert "info.json beside the trace is not an NVML trace sidecar" in p.stdout


def test_a_sidecar_with_the_expected_shape_or_named_after_the_trace_is_read(tmp_path):
    trace = _nvml_trace(tmp_path, "t", "", row=-1)
    shutil.copy(H100 / "info.json", tmp_path / "info.json")
    assert read_nvml_trace(trace).info["name"] == "NVIDIA H100 80GB HBM3"
    (tmp_path / "trace.info.json").write_text('{"name": 7}')  # named after the trace: strict
    with pytest.raises(InputError, match="trace.info.json.*name is int"):
        read_nvml_trace(trace)
    with pytest.raises(InputError, match="sidecar not found"):
        read_nvml_trace(trace, sidecar=tmp_path / "nope.json")


# ---- item 7: negative power, duplicates, time going backwards -----------------------------------

def test_negative_power_is_rejected_in_both_sample_formats(tmp_path):
    """Item 7: negative power was accepted (`Energy: -1350.0 J`)."""
    trace = _nvml_trace(tmp_path, "power_usage_mw", "-1350000")
    with pytest.raises(InputError, match=r"trace.csv:7: power_usage_mw is -1.35e\+06"):
        read_nvml_trace(trace)
    lines = (H100 / "nvidia-smi-query-100ms.csv").read_text().splitlines()[:20]
    lines[4] = lines[4].replace(", 121.", ", -1350.", 1)
    smi = tmp_path / "smi.csv"
    smi.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    p = wattprof_in_process("import", str(run), "--samples", str(smi), "--report")
    _one_line_error(p, "smi.csv:5", "negative")
    assert not run.exists()


def test_duplicate_and_backward_timestamps_are_flagged_not_silently_resolved(tmp_path):
    """Item 7: duplicate timestamps with conflicting values used to be resolved silently to one of
    them, and timestamps going backwards silently sorted: now the first row is kept and both are
    said (the reader's warnings, the import's caveats, the report's flags)."""
    lines = (H100 / "nvidia-smi-query-100ms.csv").read_text().splitlines()[:30]
    dup = lines[10].replace(", 0 %,", ", 99 %,", 1)
    assert dup != lines[10]
    lines = lines[:11] + [dup] + lines[11:]  # same stamp, conflicting utilisation
    lines[20], lines[21] = lines[21], lines[20]  # one step back in time
    smi = tmp_path / "smi.csv"
    smi.write_text("\n".join(lines) + "\n")
    r = parse_csv(smi)
    text = " ".join(r.warnings)
    assert "went backwards 1 time" in text and "1 duplicate timestamp(s)" in text and "1 with conflicting" in text
    assert len(r.samples) == 29 and r.samples["t"].is_monotonic_increasing
    assert (r.samples["util_pct"] != 99).all()  # the first row kept
    trace = _nvml_trace(tmp_path, "t", (H100 / "nvml_samples_10ms.csv").read_text().splitlines()[3].split(",")[0],
                        row=1)
    t = read_nvml_trace(trace)
    assert any("duplicate timestamp" in w and "conflicting" in w for w in t.warnings)
    run = tmp_path / "run"
    p = wattprof_in_process("import", str(run), "--samples", str(smi), "--report")
    assert p.returncode == 0, p.stderr
    assert "went backwards" in p.stdout and "duplicate timestamp" in p.stdout


# ---- item 10: the CSV reader's memory -------------------------------------------------------------

def _eight_gpu_like_csv(tmp_path):
    """Three GPUs per stamp, not in index order, with a conflicting duplicate, a step back in time,
    a repeated header and a blank line in the middle: every check the reader carries across chunks."""
    lines = (H100 / "nvidia-smi-query-100ms.csv").read_text().splitlines()
    rows = []
    for line in lines[1:201]:
        stamp, _, rest = line.split(", ", 2)
        rows += [f"{stamp}, {g}, {rest}" for g in (1, 0, 2)]
    rows.insert(100, rows[100].replace(", 0 %,", ", 99 %,", 1))  # same stamp and GPU, other values
    rows[400], rows[403] = rows[403], rows[400]  # GPU 1 goes back one period
    rows[500:500] = ["", lines[0]]  # nvidia-smi restarted into the same file
    path = tmp_path / "smi.csv"
    path.write_text("\n".join([lines[0], *rows]) + "\n")
    return path


def test_the_csv_reader_holds_numbers_not_text_and_reads_the_same_in_any_chunks(tmp_path, monkeypatch):
    """Item 10: the reader held the file as Python strings (2.2 GB for 200 MB); then as float64
    arrays plus a string per row for the device. Now the frame is numbers only: float64 per metric,
    one byte per row for the device (a categorical), and reading in chunks of any size gives the
    same frame and warnings (order, duplicates and backward steps checked across chunk ends).
    Peak memory on large files: benchmarks/csv_memory.py."""
    import numpy as np
    import pandas as pd

    from wattprof.formats import nvidia_smi_csv

    path = _eight_gpu_like_csv(tmp_path)
    monkeypatch.setattr(nvidia_smi_csv, "CHUNK_LINES", 1 << 30)
    whole = parse_csv(path)
    s = whole.samples
    assert len(s) == 3 * 200 and s["t"].is_monotonic_increasing
    assert sorted(set(s["device"])) == ["gpu:0", "gpu:1", "gpu:2"]
    text = " ".join(whole.warnings)
    assert "went backwards" in text and "1 duplicate timestamp(s) of a GPU, 1 with conflicting" in text
    usage = s.memory_usage(index=False, deep=True)
    assert usage["device"] < 2 * len(s), usage["device"]
    assert all(s[c].dtype == np.float64 and usage[c] == 8 * len(s) for c in s.columns if c != "device")
    for chunk in (2, 7, 64):
        monkeypatch.setattr(nvidia_smi_csv, "CHUNK_LINES", chunk)
        part = parse_csv(path)
        pd.testing.assert_frame_equal(part.samples, s, check_exact=True)
        assert part.warnings == whole.warnings and part.devices == whole.devices


# ---- item 11: option and field values ------------------------------------------------------------

@pytest.mark.parametrize("offset", ["nan", "inf", "1e300", "-1e20", "15"])
def test_utc_offset_out_of_range_is_a_one_line_error(tmp_path, offset):
    run = tmp_path / "run"
    p = wattprof_in_process("import", str(run), "--samples", str(H100 / "nvidia-smi-query-100ms.csv"), "--utc-offset", offset)
    _one_line_error(p, "--utc-offset")
    assert not run.exists()


@pytest.mark.parametrize("key, value", [("duration", 1e300), ("start_times", 1e300), ("ttfts", 1e300),
                                        ("start_times", -1e299)])
def test_vllm_values_near_1e300_are_one_line_errors(tmp_path, key, value):
    bench = json.loads((H100_SERVE / "vllm_bench_detailed.json").read_text())
    if isinstance(bench[key], list):
        bench[key][0] = value
    else:
        bench[key] = value
    f = tmp_path / "bench.json"
    f.write_text(json.dumps(bench))
    run = tmp_path / "run"
    p = wattprof_in_process("import", str(run), "--samples", str(H100_SERVE / "nvml_samples_10ms.csv"), "--steps", str(f))
    _one_line_error(p, "bench.json", key)


def test_lone_surrogate_labels_are_one_line_errors(tmp_path):
    """A label that no output can encode (a lone surrogate, from bytes on the command line or a
    ``\\ud800`` escape in JSON) used to crash the report with UnicodeEncodeError."""
    run = tmp_path / "run"
    p = wattprof("import", str(run), "--steps", str(H100 / "steps.jsonl"), "--label", "\udced\udca0\udc80",
                 "--report")
    _one_line_error(p, "--label")
    assert not run.exists()
    f = tmp_path / "steps.jsonl"
    f.write_text('{"t_start": 1, "t_end": 2, "label": "\\ud800"}\n')
    p = wattprof_in_process("import", str(run), "--steps", str(f), "--report")
    _one_line_error(p, "steps.jsonl:1", "label")


# ---- item 12: token sums ---------------------------------------------------------------------------

def test_tokens_near_1e308_never_sum_to_inf(tmp_path):
    """Item 12: steps with tokens near 1e308 summed to inf (J/token 0). A step's tokens above
    MAX_TOKENS are rejected, naming the line; sums of accepted ones stay finite."""
    f = tmp_path / "steps.jsonl"
    f.write_text("".join(json.dumps({"t_start": 1.7e9 + i, "t_end": 1.7e9 + i + 1, "tokens": 1e308}) + "\n"
                         for i in range(3)))
    with pytest.raises(InputError, match=r"steps.jsonl:1: 'tokens' is 1e\+308"):
        read_steps_jsonl(f)
    f.write_text("".join(json.dumps({"t_start": 1.7e9 + i, "t_end": 1.7e9 + i + 1, "tokens": 1e15}) + "\n"
                         for i in range(3)))
    assert math.isfinite(read_steps_jsonl(f)["tokens"].sum())
    run = tmp_path / "run"
    steps = tmp_path / "big.jsonl"
    steps.write_text("".join(json.dumps({"t_start": 1.7e9 + i, "t_end": 1.7e9 + i + 1, "tokens": 1e308}) + "\n"
                             for i in range(3)))
    p = wattprof_in_process("import", str(run), "--steps", str(steps), "--report")
    _one_line_error(p, "big.jsonl:1", "tokens")


# ---- item 6: overlapping steps with different labels -------------------------------------------------

def test_overlapping_labels_share_the_energy_and_totals_add_up(tmp_path):
    """Item 6: steps of two labels running at once (two threads) were each charged the full
    energy: shares added up to 150 %, J/token doubled, no note. The rule: the energy of time
    covered by k labels is split equally between them; labels + idle = total; a flag says so."""
    samples = H100 / "nvidia-smi-query-100ms.csv"
    t0 = parse_csv(samples).samples["t"].min()
    steps = tmp_path / "steps.jsonl"
    rows = [{"t_start": t0 + 5 + i, "t_end": t0 + 6 + i, "tokens": 100, "label": "train"} for i in range(20)]
    rows += [{"t_start": t0 + 15 + i, "t_end": t0 + 16 + i, "tokens": 100, "label": "eval"} for i in range(20)]
    steps.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    assert wattprof_in_process("import", str(run), "--samples", str(samples), "--steps", str(steps)).returncode == 0
    p = wattprof_in_process("report", str(run), "--format", "json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    total = rep["energy_j"] if "energy_j" in rep else rep["totals"]["energy_j"]
    labels = rep["by_label"]
    # labels + the time outside every label (unlabelled; idle is a part of it) = total
    parts = labels["train"]["energy_j"] + labels["eval"]["energy_j"] + rep["unlabelled"]["energy_j"]
    assert parts == pytest.approx(total, rel=1e-9)
    assert any("overlap" in f and "split equally" in f for f in rep["flags"]), rep["flags"]
    # alone, each label would get the full energy of its span: the overlap (10 s) is now shared
    train_alone = labels["train"]["energy_j"] + labels["eval"]["energy_j"]
    assert train_alone < total


def test_a_lone_surrogate_option_value_is_echoed_escaped_not_a_crash(tmp_path):
    """Found by the `cli-options` fuzz target: `nightly --label '\\ud800'` crashed writing its
    output (UnicodeEncodeError in click.echo). Output text is now written with such characters
    escaped."""
    from click.testing import CliRunner

    from wattprof.cli import main

    run = tmp_path / "run"
    assert wattprof_in_process("import", str(run), "--samples", str(H100 / "nvidia-smi-query-100ms.csv"),
                    "--steps", str(H100 / "steps.jsonl")).returncode == 0
    result = CliRunner().invoke(main, ["nightly", str(run), str(run), "--label", "\ud800"])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    # no run has that label: a usage error (issue 14), said on one line with the character escaped
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "\\ud800" in result.output, result.output
