"""Where nothing was measured the value is null / "-" with the reason, never 0; a failed import or
record leaves nothing behind; an imported trace is a capture, not a replay; a steps file imported
twice is refused (or replaced)."""

from __future__ import annotations

import json

from conftest import H100, H100_GPM, H100_SERVE, wattprof, wattprof_in_process

from wattprof.run import Run


def _shifted_steps(tmp_path, hours: float):
    out = tmp_path / "steps-shifted.jsonl"
    with (H100 / "steps.jsonl").open() as f, out.open("w") as g:
        for line in f:
            d = json.loads(line)
            d["t_start"] += hours * 3600
            d["t_end"] += hours * 3600
            g.write(json.dumps(d) + "\n")
    return out


def test_steps_all_outside_the_samples_are_refused_and_change_nothing(tmp_path):
    run = tmp_path / "r"
    wattprof_in_process("import", str(run), "--samples", str(H100 / "nvml_samples_10ms.csv"), check=True)
    meta = (run / "meta.json").read_text()
    files = sorted(p.name for p in run.iterdir())
    p = wattprof_in_process("import", str(run), "--steps", str(_shifted_steps(tmp_path, 2)))
    assert p.returncode == 2 and "outside the run's samples" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert (run / "meta.json").read_text() == meta and sorted(x.name for x in run.iterdir()) == files


def test_a_failed_import_creates_no_run(tmp_path):
    run = tmp_path / "new"
    p = wattprof_in_process("import", str(run), "--samples", str(H100 / "nvml_samples_10ms.csv"), "--steps",
                 str(_shifted_steps(tmp_path, -5)))
    assert p.returncode == 2 and not run.exists()


def test_labels_with_nothing_measured_are_null_not_zero(tmp_path):
    # steps written straight into the run (as a foreign tool would), all outside the samples
    run = tmp_path / "r"
    wattprof_in_process("import", str(run), "--samples", str(H100 / "nvml_samples_10ms.csv"), check=True)
    (run / "steps-foreign.jsonl").write_text(_shifted_steps(tmp_path, 2).read_text())
    rep = json.loads(wattprof_in_process("report", str(run), "--format", "json", check=True).stdout)
    train = rep["by_label"]["train"]
    assert train["energy_j"] is None and train["j_per_token"] is None
    assert rep["j_per_token"] is None
    assert any("no energy measured" in f for f in train["flags"])
    text = wattprof_in_process("report", str(run), check=True).stdout
    assert "0 mJ/token" not in text and "no energy measured" in text


def test_record_of_a_missing_command_exits_127_without_an_energy_report(tmp_path):
    run = tmp_path / "r"
    p = wattprof("record", "-o", str(run), "-c", "nvml-replay", "--", "no-such-command-wattprof")
    assert p.returncode == 127
    assert "Energy:" not in p.stderr and "Energy:" not in p.stdout and " J " not in p.stderr
    assert not run.exists() or Run.open(run).status == "failed"


def test_a_gpm_csv_imported_alone_reports_its_span_and_no_energy(tmp_path):
    run = tmp_path / "g"
    wattprof_in_process("import", str(run), "--samples", str(H100_GPM / "gpm_samples_500ms.csv"), check=True)
    rep = json.loads(wattprof_in_process("report", str(run), "--format", "json", check=True).stdout)
    assert rep["duration_s"] > 50 and rep["energy_j"] is None


def test_an_imported_nvml_trace_is_not_called_a_replay(tmp_path):
    run = tmp_path / "t"
    wattprof_in_process("import", str(run), "--samples", str(H100_SERVE / "nvml_samples_10ms.csv"), check=True)
    dev = Run.open(run).meta["devices"]["gpu:0"]
    assert "replayed" not in dev["name"] and dev.get("uuid") != "GPU-00000000-0000-0000-0000-000000000000"
    run2 = tmp_path / "t2"
    wattprof_in_process("import", str(run2), "--samples", str(H100 / "nvml_samples_10ms.csv"), check=True)
    dev = Run.open(run2).meta["devices"]["gpu:0"]
    assert dev["name"] == "NVIDIA H100 80GB HBM3" and dev["uuid"].startswith("GPU-1ddf2a9c")


def test_the_same_steps_file_twice_is_refused_or_replaced(tmp_path):
    run = tmp_path / "s"
    wattprof_in_process("import", str(run), "--samples", str(H100_SERVE / "nvml_samples_10ms.csv"), "--steps",
             str(H100_SERVE / "vllm_bench_detailed.json"), check=True)
    n = len(Run.open(run).steps)
    p = wattprof_in_process("import", str(run), "--steps", str(H100_SERVE / "vllm_bench_detailed.json"))
    assert p.returncode == 2 and "already imported" in p.stderr and "--replace" in p.stderr
    assert len(Run.open(run).steps) == n
    wattprof_in_process("import", str(run), "--steps", str(H100_SERVE / "vllm_bench_detailed.json"), "--replace", check=True)
    assert len(Run.open(run).steps) == n
