"""The text report a person reads in a terminal: it fits COLUMNS (100 when not a terminal), every
column has one unit named in its header, each note is said once, no raw Unix timestamps, the
suggestions are wrapped, never cut, and every label has its J/step. On every shared capture."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import H100, H100_GPM, H100_SERVE, fixture_dir, wattprof, wattprof_in_process

CAPTURES = ["h100-nvml", "h100-smi", "h100-gpm", "serve-vllm", "serve-smi", "neuron"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("captures")
    h100, gpm, serve = fixture_dir(H100), fixture_dir(H100_GPM), fixture_dir(H100_SERVE)

    def imp(name: str, *args: str) -> Path:
        wattprof_in_process("import", str(root / name), *args, check=True)
        return root / name

    out = {
        "h100-nvml": imp("h100-nvml", "--samples", str(h100 / "nvml_samples_10ms.csv"), "--steps",
                         str(h100 / "steps.jsonl")),
        "h100-smi": imp("h100-smi", "--samples", str(h100 / "nvidia-smi-query-100ms.csv"), "--steps",
                        str(h100 / "steps.jsonl")),
        "h100-gpm": imp("h100-gpm", "--samples", str(gpm / "nvml_samples_10ms.csv"), "--steps",
                        str(gpm / "steps.jsonl")),
        "serve-vllm": imp("serve-vllm", "--samples", str(serve / "nvml_samples_10ms.csv"), "--steps",
                          str(serve / "vllm_bench_detailed.json")),
        "serve-smi": imp("serve-smi", "--samples", str(serve / "nvidia-smi-query-100ms.csv"), "--steps",
                         str(serve / "requests_wallclock.jsonl")),
    }
    wattprof_in_process("import", str(out["h100-gpm"]), "--samples", str(gpm / "gpm_samples_500ms.csv"), check=True)
    from test_collectors_smi_neuron import fake_env, sysfs_tree

    sysroot = sysfs_tree(root / "sys")
    p = wattprof("record", "--out", str(root / "neuron"), "-c", f"neuron:sysfs_root={sysroot},max_w=400,idle_w=50",
                 "-q", "--", "sleep", "2", env=fake_env(FAKE_NEURON_MONITOR_CONFIG_COPY=str(root / "cfg.json")))
    assert p.returncode == 0, p.stderr
    out["neuron"] = root / "neuron"
    return out


def report_text(run: Path, columns: str = "100") -> str:
    return wattprof("report", str(run), env={"COLUMNS": columns}, check=True).stdout


@pytest.mark.parametrize("capture", CAPTURES)
def test_columns_100_fits_every_shared_capture(runs, capture):
    out = report_text(runs[capture])
    too_long = [x for x in out.splitlines() if len(x) > 100]
    assert too_long == []
    # no raw Unix timestamps anywhere (dates instead)
    assert not re.search(r"(?<![\d.])1[5-9]\d{8}(\.\d+)?(?!\d)", out), out
    # no verdict repeated by its suggestion ("compute-bound: Compute-bound:")
    assert not re.search(r"(compute|memory|host)-bound: (Compute|Memory|Host)-bound", out, re.I)
    # one note per kind
    notes = [x for x in out.splitlines() if x.startswith("  ! ")]
    kinds = [re.sub(r"[\d.,]+", "#", n.split(": ", 1)[-1]) for n in notes]
    assert len(kinds) == len(set(kinds)), notes


def test_narrow_terminal_wraps_tables_into_blocks_and_loses_nothing(runs):
    wide = report_text(runs["h100-gpm"], "250")
    narrow = report_text(runs["h100-gpm"], "60")
    assert max(len(x) for x in narrow.splitlines()) <= 60
    # every figure of the wide report's label table is still there (a second block repeats the labels)
    def table(text: str) -> list[str]:
        return text[text.index("By label"):text.index("Unlabelled (")].splitlines()

    for label in ("train_stalled", "launchbound", "matmul"):
        wide_row = next(x for x in table(wide) if x.startswith(f"  {label} "))
        narrow_rows = [x for x in table(narrow) if x.startswith(f"  {label} ")]
        assert len(narrow_rows) >= 2
        assert wide_row.split()[1:] == [c for r in narrow_rows for c in r.split()[1:]]
    # the bottleneck suggestions are wrapped, not cut
    assert " ..." not in narrow


def test_by_label_table_has_one_unit_per_column_and_j_per_step(runs):
    out = report_text(runs["h100-nvml"])
    lines = out.splitlines()
    i = next(k for k, x in enumerate(lines) if x.startswith("By label"))
    header = " ".join(lines[i + 1: i + 5])
    assert "(J/step)" in header and "(mJ/token)" in header
    rows = [x for x in lines[i:] if x.startswith(("  train ", "  decode ", "  membound "))][:3]
    assert len(rows) == 3
    for row in rows:  # cells are numbers only: the unit is in the header
        assert not re.search(r"\d\s?(k?J|W|s|mJ/token|J/token)\b", row), row
    # J/step is energy / steps
    from wattprof.reports.build import build_report
    from wattprof.run import Run

    rep = build_report(Run.open(runs["h100-nvml"]))
    decode = rep.by_label["decode"]
    assert f"{decode.energy_j / decode.steps:.2f}" in next(r for r in rows if r.startswith("  decode "))
