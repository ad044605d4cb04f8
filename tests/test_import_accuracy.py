"""Importing the real H100 NVML trace and its step log gives per-label energy that matches the
hardware counter's ground truth (phases.json)."""

from __future__ import annotations

import json

import pytest
from conftest import phases, wattprof_in_process


@pytest.fixture(scope="module")
def imported(tmp_path_factory, request):
    from conftest import H100, fixture_dir

    fx = fixture_dir(H100)
    run = tmp_path_factory.mktemp("runs") / "h100"
    wattprof_in_process("import", str(run), "--samples", str(fx / "nvml_samples_10ms.csv"), "--steps",
             str(fx / "steps.jsonl"), check=True)
    rep = json.loads(wattprof_in_process("report", str(run), "--format", "json", check=True).stdout)
    return fx, run, rep


LABELLED = ["train", "train_stalled", "membound", "decode"]


@pytest.mark.parametrize("label", LABELLED)
def test_label_energy_within_1pct_of_counter_ground_truth(imported, label):
    fx, _, rep = imported
    truth_j = phases(fx)[label]["energy_counter_mj"] / 1000
    got = rep["by_label"][label]["energy_j"]
    assert got == pytest.approx(truth_j, rel=0.01), f"{label}: {got:.1f} J vs counter {truth_j:.1f} J"


def test_j_per_token_for_train_and_decode(imported):
    fx, _, rep = imported
    ph = phases(fx)
    steps = [json.loads(line) for line in (fx / "steps.jsonl").read_text().splitlines() if line.strip()]
    for label in ("train", "decode"):
        tokens = sum(s["tokens"] for s in steps if s["phase"] == label)
        lr = rep["by_label"][label]
        assert lr["tokens"] == tokens
        expected = ph[label]["energy_counter_mj"] / 1000 / tokens
        assert lr["j_per_token"] == pytest.approx(expected, rel=0.01)
    assert rep["by_label"]["membound"]["j_per_token"] is None  # 0 tokens: no figure, not a division by zero


def test_between_step_energy_is_part_of_the_label(imported):
    _, _, rep = imported
    stalled = rep["by_label"]["train_stalled"]
    # 150 ms host sleep before each ~60 ms step: most of the label's energy is between steps
    assert stalled["between_steps_energy_j"] > stalled["in_step_energy_j"]
    assert stalled["in_step_energy_j"] + stalled["between_steps_energy_j"] == pytest.approx(stalled["energy_j"])
    train = rep["by_label"]["train"]
    assert train["between_steps_energy_j"] < 0.01 * train["energy_j"]


def test_time_outside_labels_is_idle_energy(imported):
    fx, _, rep = imported
    ph = phases(fx)
    idle_truth = (ph["idle_start"]["energy_counter_mj"] + ph["idle_end"]["energy_counter_mj"]) / 1000
    # idle = idle phases + the first 150 ms stall before train_stalled's first step + phase-edge gaps
    assert rep["unlabelled"]["energy_j"] == pytest.approx(idle_truth, rel=0.08)
    assert rep["unlabelled"]["duration_s"] == pytest.approx(10.2, abs=0.3)
    # the unlabelled time of this capture is idle (the idle phases and a host stall at the floor)
    assert rep["idle"]["energy_j"] == pytest.approx(idle_truth, rel=0.08)
    assert rep["idle"]["energy_j"] <= rep["unlabelled"]["energy_j"] + 1e-6
    total = sum(lr["energy_j"] for lr in rep["by_label"].values()) + rep["unlabelled"]["energy_j"]
    assert total == pytest.approx(rep["energy_j"], rel=1e-9)


def test_report_keys_sources_and_boundary(imported):
    _, _, rep = imported
    for key in ("energy_j", "duration_s", "tokens", "j_per_token", "devices", "by_label", "boundary"):
        assert key in rep
    (dev,) = rep["devices"]
    assert dev["device"] == "gpu:0" and dev["energy_source"] == "counter" and not dev["estimated"]
    assert dev["name"] == "NVIDIA H100 80GB HBM3" and dev["power_limit_w"] == 700
    assert rep["boundary"].startswith("GPU only")
    for lr in rep["by_label"].values():
        assert set(lr) >= {"energy_j", "duration_s", "tokens", "j_per_token", "steps"}


def test_text_report_shows_labels_idle_and_source(imported):
    _, run, _ = imported
    out = wattprof_in_process("report", str(run), check=True).stdout
    for word in ("train_stalled", "decode", "Unlabelled", "idle", "counter", "GPU only", "J/token"):
        assert word in out


def test_import_is_repeatable_on_the_same_run(tmp_path, h100):
    run = tmp_path / "r"
    wattprof_in_process("import", str(run), "--steps", str(h100 / "steps.jsonl"), check=True)
    wattprof_in_process("import", str(run), "--samples", str(h100 / "nvml_samples_10ms.csv"), check=True)
    rep = json.loads(wattprof_in_process("report", str(run), "-f", "json", check=True).stdout)
    assert rep["by_label"]["decode"]["energy_j"] == pytest.approx(
        phases(h100)["decode"]["energy_counter_mj"] / 1000, rel=0.01)
    meta = json.loads((run / "meta.json").read_text())
    assert len(meta["sources"]) == 2
