"""AWS Neuron on real instance shapes: multi-device core mapping, Trn2 logical cores, device types,
the sysfs power node across driver layouts, honest power defaults, and devices in containers.

Fixtures: tests/fixtures/aws-neuron/make_fixtures.py (the documented schema; values invented)
replayed through the real collector and the stand-in tests/bin/neuron-monitor."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import NEURON

from wattprof.collectors.neuron import NeuronCollector, type_from_instance, type_from_name
from wattprof.errors import CollectorError
from wattprof.formats.neuron_monitor import parse_report, read_neuron_monitor_jsonl

BIN = Path(__file__).resolve().parent / "bin"
TRN1_32 = NEURON / "neuron_monitor_trn1_32xlarge_replay.jsonl"
INF2 = NEURON / "neuron_monitor_inf2_xlarge_replay.jsonl"
TRN2_48 = NEURON / "neuron_monitor_trn2_48xlarge_replay.jsonl"


@pytest.fixture
def monitor(monkeypatch: pytest.MonkeyPatch):
    """The stand-in neuron-monitor first on PATH, replaying the file given to the returned setter."""
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_NEURON_MONITOR_SPEED", "10")

    def use(path: Path) -> None:
        assert path.is_file(), f"fixture missing: {path} (run tests/fixtures/aws-neuron/make_fixtures.py)"
        monkeypatch.setenv("FAKE_NEURON_MONITOR_JSONL", str(path))
    return use


def collect(c: NeuronCollector, seconds: float) -> tuple[list[dict], list[str]]:
    rows, errors = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            rows += c.read()
        except CollectorError as e:
            errors.append(str(e))
        time.sleep(0.05)
    return rows, errors


def steady(path: Path) -> dict[str, dict]:
    log = read_neuron_monitor_jsonl(path)
    return {s["device"]: s for s in log.reports[-1].samples}


# --- the parser: which device a core is on ------------------------------------------------------------

def test_trn1_32xlarge_load_on_global_core_0_lands_on_device_0():
    by = steady(TRN1_32)
    assert sorted(by) == sorted([f"neuron:{d}" for d in range(16)] + ["host"])
    assert by["neuron:0"]["util_pct"] == pytest.approx((90 + 1) / 2)  # global core 0 at 90 %, core 1 at 1 %
    for d in range(1, 16):
        assert by[f"neuron:{d}"]["util_pct"] == pytest.approx(5 * d + 0.5), d
    # every device has a model (device-local indices 0/1): application figures on all 16, once each
    assert all(by[f"neuron:{d}"]["exec_per_s"] == pytest.approx(100.0) for d in range(16))


def test_device_local_model_indices_never_move_a_core_to_another_device():
    """A model loaded on core 0 of device 12 (the user guide's example) says nothing about global core 0."""
    hw = {"neuron_device_count": 16, "neuroncore_per_device_count": 2}
    app = {"pid": 1, "report": {
        "neuroncore_counters": {"period": 1.0, "neuroncores_in_use": {"0": {"neuroncore_utilization": 90.0},
                                                                       "24": {"neuroncore_utilization": 10.0}}},
        "memory_used": {"period": 1.0, "loaded_models": [{"subgraphs": {"sg_00": {
            "neuroncore_index": 0, "neuron_device_index": 12}}}]},
        "execution_stats": {"period": 1.0, "execution_summary": {"completed": 7}}}}
    samples, errors = parse_report({"neuron_runtime_data": [app], "neuron_hardware_info": hw})
    by = {s["device"]: s for s in samples}
    assert errors == []
    assert by["neuron:0"]["util_pct"] == 90.0 and by["neuron:12"]["util_pct"] == 10.0
    assert "util_pct" not in by.get("neuron:8", {})
    assert by["neuron:12"]["exec_per_s"] == 7.0 and "exec_per_s" not in by["neuron:0"]  # the model's device


def test_trn2_logical_cores_are_not_divided_again_and_no_device_is_invented():
    by = steady(TRN2_48)
    devices = sorted((k for k in by if k.startswith("neuron:")), key=lambda k: int(k.split(":")[1]))
    assert devices == [f"neuron:{d}" for d in range(16)]  # no neuron:16..31
    assert by["neuron:1"]["util_pct"] == 80.0  # cores 4-7: device 1 (4 logical cores per device at LNC=2)
    assert by["neuron:15"]["util_pct"] == 20.0  # cores 60-63, as neuron-ls lists them
    assert by["neuron:2"]["util_pct"] == 0.0 and by["neuron:3"]["util_pct"] == 0.0


def test_cores_beyond_the_described_devices_are_left_out_and_said():
    hw = {"neuron_device_count": 2, "neuroncore_per_device_count": 4, "logical_neuroncore_config": 2}
    app = {"pid": 1, "report": {"neuroncore_counters": {"period": 1.0, "neuroncores_in_use": {
        "3": {"neuroncore_utilization": 50.0}, "9": {"neuroncore_utilization": 70.0}}}}}
    samples, errors = parse_report({"neuron_runtime_data": [app], "neuron_hardware_info": hw})
    assert [s["device"] for s in samples] == ["neuron:0"]  # core 9 would be on device 2: there is none
    assert errors == ["NeuronCore(s) 9 not on any of the 2 device(s) x 4 core(s) (neuron_hardware_info): left out"]


def test_without_a_per_device_count_the_device_type_gives_it():
    hw = {"neuron_device_type": "trainium2", "neuron_device_count": 16, "logical_neuroncore_config": 2}
    app = {"pid": 1, "report": {"neuroncore_counters": {"period": 1.0, "neuroncores_in_use": {
        "5": {"neuroncore_utilization": 60.0}}}}}
    by = {s["device"]: s for s in parse_report({"neuron_runtime_data": [app], "neuron_hardware_info": hw})[0]}
    assert by["neuron:1"]["util_pct"] == 60.0  # 8 physical cores / LNC 2 = 4 logical per device
    unknown = {"neuron_device_count": 4}
    samples, errors = parse_report({"neuron_runtime_data": [app], "neuron_hardware_info": unknown})
    assert all("util_pct" not in s for s in samples) and "left out" in errors[0]


def test_inf2_xlarge_is_one_device_of_two_cores():
    by = steady(INF2)
    assert by["neuron:0"]["util_pct"] == 50.0 and "neuron:1" not in by


# --- device types -------------------------------------------------------------------------------------

@pytest.mark.parametrize("instance, expected", [
    ("trn1.2xlarge", "trn1"), ("trn1n.32xlarge", "trn1"), ("trn2.48xlarge", "trn2"), ("trn2u.48xlarge", "trn2"),
    ("trn2n.48xlarge", "trn2"), ("inf2.xlarge", "inf2"), ("inf1.6xlarge", "inf1"), ("trn3.48xlarge", "trn3"),
    ("p5.48xlarge", None), ("", None), (None, None)])
def test_instance_types_and_their_variants(instance, expected):
    assert type_from_instance(instance) == expected


@pytest.mark.parametrize("name, expected", [
    ("inferentia2", "inf2"), ("trainium2", "trn2"), ("trainium", "trn1"), ("inferentia", "inf1"),
    ("Trainium1", "trn1"), ("Inferentia2", "inf2"), ("tpu", None)])
def test_device_type_names_from_neuron_monitor_and_sysfs(name, expected):
    assert type_from_name(name) == expected


# --- through the real collector and the stand-in neuron-monitor ---------------------------------------

@pytest.mark.parametrize("fixture, name, devices, busy", [
    (TRN1_32, "Trainium1 (trn1.32xlarge)", 16, {"neuron:0": 45.5, "neuron:8": 40.5}),
    (INF2, "Inferentia2 (inf2.xlarge)", 1, {"neuron:0": 50.0}),
    (TRN2_48, "Trainium2 (trn2.48xlarge)", 16, {"neuron:1": 80.0, "neuron:2": 0.0, "neuron:15": 20.0}),
])
def test_the_collector_attributes_load_to_the_right_devices(monitor, tmp_path, fixture, name, devices, busy):
    monitor(fixture)
    c = NeuronCollector(sysfs_root=str(tmp_path / "no-sysfs"))
    try:
        meta = c.open()
        rows, _ = collect(c, 1.0)
    finally:
        c.close()
    assert sorted(meta) == sorted(f"neuron:{d}" for d in range(devices))
    assert meta["neuron:0"]["name"] == name
    assert {r["device"] for r in rows} <= set(meta)
    for dev, util in busy.items():
        got = [r["util_pct"] for r in rows if r["device"] == dev and "util_pct" in r]
        assert got and got[-1] == pytest.approx(util), dev


def test_fixture_files_are_what_the_generator_writes(tmp_path):
    import subprocess
    import sys
    subprocess.run([sys.executable, str(NEURON / "make_fixtures.py"), str(tmp_path)], check=True)
    for name in ("neuron_monitor_trn1_32xlarge_replay.jsonl", "neuron_monitor_inf2_xlarge_replay.jsonl",
                 "neuron_monitor_trn2_48xlarge_replay.jsonl"):
        assert (tmp_path / name).read_text() == (NEURON / name).read_text(), name
        assert all(isinstance(json.loads(line), dict) for line in (NEURON / name).read_text().splitlines())
