"""Every command's usage contract: a mistake is exit status 2 and one line saying what to do,
said before anything runs (no child started, no file written, no run created)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import wattprof

MARKER_CHILD = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('ran')"


def one_line_usage_error(p, *needles: str) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, p.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from conftest import H100, fixture_dir

    fx = fixture_dir(H100)
    out = tmp_path_factory.mktemp("contracts") / "run"
    wattprof("import", str(out), "--samples", str(fx / "nvml_samples_10ms.csv"), "--steps", str(fx / "steps.jsonl"),
             check=True)
    return out


# ---- report: location and output format ----------------------------------------------------------------


@pytest.mark.parametrize("flag,value,needle", [
    ("--region", "aws:mars-1", "unknown region 'aws:mars-1'"),
    ("--country", "XYZ", "XYZ"),
])
def test_unknown_location_is_a_usage_error_not_a_silent_drop_of_co2(run, tmp_path, flag, value, needle):
    out = tmp_path / "r.json"
    p = wattprof("report", str(run), flag, value, "-o", str(out))
    one_line_usage_error(p, flag, needle)
    assert not out.exists()


def test_output_extension_no_format_writes(run, tmp_path):
    out = tmp_path / "out.pdf"
    p = wattprof("report", str(run), "-o", str(out))
    one_line_usage_error(p, "out.pdf", ".pdf", ".html", "--format")
    assert not out.exists()
    # the known extensions still choose their format
    txt = tmp_path / "out.txt"
    wattprof("report", str(run), "-o", str(txt), check=True)
    assert txt.read_text().startswith("wattprof report")


def test_compare_and_nightly_check_the_extension_too(run, tmp_path):
    one_line_usage_error(wattprof("compare", str(run), str(run), "-o", str(tmp_path / "c.pdf")), ".pdf")
    one_line_usage_error(wattprof("nightly", str(run), "-o", str(tmp_path / "n.docx")), ".docx")


# ---- record ------------------------------------------------------------------------------------------------


def record_and_check_child_did_not_run(tmp_path, *args: str):
    marker = tmp_path / "child-ran"
    p = wattprof("record", *args, "--", sys.executable, "-c", MARKER_CHILD, str(marker))
    assert not marker.exists(), "the command ran although the usage was wrong"
    return p


def test_record_into_an_existing_run(run, tmp_path):
    before = json.loads((run / "meta.json").read_text())
    p = record_and_check_child_did_not_run(tmp_path, "-o", str(run), "-c", "nvml-replay")
    one_line_usage_error(p, str(run), "already holds a run")
    assert json.loads((run / "meta.json").read_text()) == before  # nothing recorded is touched


def test_a_collector_that_is_not_available_here(tmp_path):
    p = record_and_check_child_did_not_run(tmp_path, "-o", str(tmp_path / "r"), "-c",
                                           "nvidia-smi:executable=/nonexistent/nvidia-smi")
    one_line_usage_error(p, "nvidia-smi", "not available", "wattprof collectors")
    assert not (tmp_path / "r").exists()


def test_nvml_without_a_gpu(tmp_path):
    from wattprof.collectors.base import create

    ok, _ = create("nvml").available()
    if ok:
        pytest.skip("this machine has NVML and a GPU")
    p = record_and_check_child_did_not_run(tmp_path, "-o", str(tmp_path / "r"), "-c", "nvml")
    one_line_usage_error(p, "'nvml'", "not available")


def test_unknown_collector_option_lists_the_valid_ones(tmp_path):
    p = record_and_check_child_did_not_run(tmp_path, "-c", "nvml-replay:speed=1")
    line = one_line_usage_error(p, "unknown option 'speed'", "trace=", "devices=")
    assert "unexpected keyword" not in line


def test_quiet_and_progress_contradict(tmp_path):
    p = record_and_check_child_did_not_run(tmp_path, "-q", "--progress", "-c", "nvml-replay")
    one_line_usage_error(p, "--quiet", "--progress")


# ---- nightly -------------------------------------------------------------------------------------------------


def test_nightly_on_a_path_without_runs(tmp_path):
    one_line_usage_error(wattprof("nightly", str(tmp_path)), "no run found", str(tmp_path))


def test_nightly_label_no_run_has(run):
    one_line_usage_error(wattprof("nightly", str(run), "--label", "nosuch"), "--label 'nosuch'", "train")


@pytest.mark.parametrize("baseline", ["median", "median7"])
def test_nightly_baseline_median_says_median_n(run, baseline):
    one_line_usage_error(wattprof("nightly", str(run), "--baseline", baseline), "median:N")


def test_nightly_baseline_that_is_no_run(run, tmp_path):
    one_line_usage_error(wattprof("nightly", str(run), "--baseline", str(tmp_path / "x")),
                         "last, median:N or a run directory")


# ---- hints name the real flags ---------------------------------------------------------------------------------


def test_export_cloudwatch_without_region_names_the_flag(run, tmp_path):
    env = {"AWS_REGION": "", "AWS_DEFAULT_REGION": "", "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    pytest.importorskip("boto3")
    p = wattprof("export", "cloudwatch", str(run), env=env)
    line = one_line_usage_error(p, "--aws-region")
    assert "region=REGION" not in line


# ---- record says what it measures -------------------------------------------------------------------------------


def test_record_says_what_it_measures_on_one_line(tmp_path):
    p = wattprof("record", "-o", str(tmp_path / "r"), "-c", "nvml-replay", "-c", "host", "-q", "--",
                 sys.executable, "-c", "pass")
    assert p.returncode == 0, p.stderr
    lines = [x for x in p.stderr.splitlines() if "measuring:" in x]
    assert len(lines) == 1, p.stderr
    assert "gpu:0 (replayed NVML trace" in lines[0] and "host (" in lines[0]
    # the host's source is said: RAPL when readable, else an estimate with the reason
    assert "host (estimate: " in lines[0] or "host (RAPL" in lines[0]


def test_profile_says_what_it_measures(tmp_path):
    code = ("import wattprof\n"
            f"with wattprof.profile('p', collectors=['nvml-replay'], out={str(tmp_path / 'r')!r}):\n"
            "    pass\n")
    import subprocess

    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert [x for x in p.stderr.splitlines() if "measuring:" in x] == [
        "wattprof: measuring: gpu:0 (replayed NVML trace: energy counter, instant and averaged power)"]
