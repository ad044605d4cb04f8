"""AWS Neuron on real instance shapes: multi-device core mapping, Trn2 logical cores, device types,
the sysfs power node across driver layouts, honest power defaults, and devices in containers.

Fixtures: tests/fixtures/aws-neuron/make_fixtures.py (the documented schema; values invented)
replayed through the real collector and the stand-in tests/bin/neuron-monitor."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import NEURON, collect, wattprof_in_process

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


# --- power: the sysfs node across driver layouts --------------------------------------------------------

MINUTE = "POWER_STATUS_VALID,1789180860,0.86,25.00,18.86\n"


def power_tree(root: Path, devices: int = 1, where: str = "stats/power", minute: str | None = MINUTE,
               raw: str | None = None, first: int = 0) -> Path:
    for n in range(first, first + devices):
        d = root / f"neuron{n}" / where
        d.mkdir(parents=True)
        (root / f"neuron{n}" / "power").mkdir(exist_ok=True)  # the kernel's own runtime-PM directory
        (root / f"neuron{n}" / "power" / "runtime_status").write_text("unsupported\n")
        if minute is not None:
            (d / "utilization").write_text(minute)
        if raw is not None:
            (d / "utilization_raw").write_text(raw)
    return root


def open_sysfs_only(root: Path, **opts) -> tuple[dict, list[dict], list[str]]:
    c = NeuronCollector(sysfs_root=str(root), monitor="off", period_s=1, **opts)
    try:
        meta = c.open()
        rows, errors = collect(c, 1.2)
    finally:
        c.close()
    return meta, rows, errors


def test_pre_2_31_layout_prefers_the_live_raw_node(tmp_path):
    root = power_tree(tmp_path / "sys", devices=2, raw="POWER_STATUS_VALID,1789180861,41.25,37.50\n")
    meta, rows, errors = open_sysfs_only(root, device_type="trn2")
    src = meta["neuron:0"]["power_source"]
    assert "stats/power/utilization_raw (live per-die power utilization, driver 2.29+)" in src
    assert "else " + str(root / "neuron0" / "stats" / "power" / "utilization") in src
    assert errors == [] and rows
    # the largest die (41.25 %), above an epoch: 85 W floor + 41.25 % of 500 W
    assert all(r["power_util_pct"] == 41.25 and r["power_est_w"] == pytest.approx(85 + 0.4125 * 500) for r in rows)


def test_post_2_31_layout_finds_the_node_where_it_moved(tmp_path):
    root = power_tree(tmp_path / "sys", where="stats/hardware/power", raw="die0: 12.5\ndie1: 30.0\n")
    meta, rows, errors = open_sysfs_only(root, device_type="inf2")
    src = meta["neuron:0"]["power_source"]
    assert str(root / "neuron0" / "stats" / "hardware" / "power" / "utilization_raw") in src
    assert errors == [] and rows and all(r["power_util_pct"] == 30.0 for r in rows)
    assert all(r["power_est_w"] == pytest.approx(17 + 30.0) for r in rows)


def test_absent_node_says_which_paths_were_tried(tmp_path, monitor):
    root = power_tree(tmp_path / "sys", minute=None)
    c = NeuronCollector(sysfs_root=str(root), monitor="off")
    ok, why = c.available()
    assert not ok and str(root / "neuron0" / "stats" / "power" / "utilization_raw") in why
    assert "**/power/{utilization_raw,utilization} (depth <= 4, outside neuron_core*)" in why and "2.21.37" not in why
    with pytest.raises(CollectorError, match="tried .*stats/power/utilization;"):
        c.open()
    monitor(INF2)  # with neuron-monitor: a utilisation estimate, and the reason there is no sysfs figure
    c = NeuronCollector(sysfs_root=str(root))
    try:
        src = c.open()["neuron:0"]["power_source"]
    finally:
        c.close()
    assert src.startswith("estimated: utilization-based") and "no sysfs power node (tried " in src


def test_an_unreadable_raw_format_is_reported_and_the_minute_file_used(tmp_path):
    root = power_tree(tmp_path / "sys", raw="calibrating\n")
    meta, rows, errors = open_sysfs_only(root, device_type="inf2")
    assert any("utilization_raw holds 'calibrating', not a format wattprof reads" in e for e in errors)
    assert rows and all(r["power_util_pct"] == 18.86 for r in rows)


# --- power: defaults with their sources ----------------------------------------------------------------

@pytest.mark.parametrize("kind, max_w, words", [
    ("trn1", 100.0, "derived: Inferentia2's figure"), ("trn2", 500.0, "third-party estimate"),
    ("inf2", 100.0, "third-party estimate"), ("inf1", 75.0, "third-party estimate")])
def test_every_supported_type_has_a_sourced_default_and_an_idle_floor(tmp_path, kind, max_w, words):
    meta, rows, _ = open_sysfs_only(power_tree(tmp_path / "sys"), device_type=kind)
    m = meta["neuron:0"]
    assert m["power_estimated"] is True and m["max_w"] == max_w and words in m["max_w_from"]
    assert m["idle_w"] == pytest.approx(0.17 * max_w, abs=0.05) and "assumed floor" in m["idle_w_from"]
    assert f"max_w={max_w:g} W (default for" in m["power_source"] and "idle_w=" in m["power_source"]
    assert rows and rows[0]["power_est_w"] == pytest.approx(m["idle_w"] + 0.1886 * max_w)


def test_without_a_known_default_utilisation_is_kept_and_power_says_why(monitor, tmp_path):
    monitor(INF2)
    c = NeuronCollector(sysfs_root=str(power_tree(tmp_path / "sys")), device_type="trn3")
    try:
        meta = c.open()
        rows, _ = collect(c, 0.8)
    finally:
        c.close()
    assert meta["neuron:0"]["power_estimated"] is False and meta["neuron:0"]["max_w"] is None
    assert meta["neuron:0"]["power_source"].startswith("none: no known maximum power for Trainium3")
    assert any(r.get("util_pct") == 50.0 for r in rows) and all("power_est_w" not in r for r in rows)


def test_the_report_says_the_neuron_figure_is_an_estimate_and_from_what(tmp_path):
    from conftest import wattprof
    root, run = power_tree(tmp_path / "sys"), tmp_path / "run"
    env = {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "FAKE_NEURON_MONITOR_SPEED": "10",
           "FAKE_NEURON_MONITOR_JSONL": str(INF2)}
    p = wattprof("record", "--out", str(run), "-c", f"neuron:sysfs_root={root}", "-q", "--", "sleep", "1.5", env=env)
    assert p.returncode == 0, p.stderr
    md = wattprof("report", str(run), "--format", "markdown", env=env)
    assert md.returncode == 0, md.stderr
    assert "ESTIMATE" in md.stdout and "neuron sysfs power utilization" in md.stdout
    assert "third-party estimate" in md.stdout and "assumed floor" in md.stdout


# --- containers: sysfs numbering vs neuron-monitor's ----------------------------------------------------

def test_container_numbering_without_identity_is_flagged_and_sysfs_not_used(monitor, tmp_path, monkeypatch):
    monitor(INF2)  # neuron-monitor: device 0; sysfs (host-wide): neuron3
    monkeypatch.delenv("FAKE_NEURON_LS_JSON", raising=False)
    root = power_tree(tmp_path / "sys", first=3)
    c = NeuronCollector(sysfs_root=str(root))
    try:
        meta = c.open()
        rows, errors = collect(c, 0.8)
    finally:
        c.close()
    assert list(meta) == ["neuron:0"]  # no neuron:3 invented from sysfs
    assert "ambiguous device numbering" in meta["neuron:0"]["sysfs_pairing"]
    assert meta["neuron:0"]["power_source"].startswith("estimated: utilization-based")
    assert "sysfs_map=" in meta["neuron:0"]["power_source"]
    assert any("ambiguous device numbering" in e for e in errors)
    assert all("power_util_pct" not in r for r in rows)


def test_container_devices_are_paired_by_pci_bdf_from_neuron_ls(monitor, tmp_path, monkeypatch):
    monitor(INF2)
    root = power_tree(tmp_path / "sys", first=3)
    pci = tmp_path / "pci" / "0000:00:1f.0"
    pci.mkdir(parents=True)
    (root / "neuron3" / "device").symlink_to(pci)
    ls = tmp_path / "ls.json"
    ls.write_text(json.dumps([{"neuron_device": 0, "bdf": "00:1f.0", "nc_count": 2}]))
    monkeypatch.setenv("FAKE_NEURON_LS_JSON", str(ls))
    c = NeuronCollector(sysfs_root=str(root))
    try:
        meta = c.open()
        rows, _ = collect(c, 0.8)
    finally:
        c.close()
    m = meta["neuron:0"]
    assert m["pci_bdf"] == "00:1f.0" and m["sysfs_device"] == str(root / "neuron3")
    assert m["sysfs_pairing"].startswith("sysfs paired by PCI BDF / serial (neuron-ls -j): 1 of 1")
    assert rows and all(r["power_util_pct"] == 18.86 for r in rows if r["device"] == "neuron:0")


def test_container_devices_can_be_paired_by_option(monitor, tmp_path):
    monitor(INF2)
    root = power_tree(tmp_path / "sys", first=3)
    c = NeuronCollector(sysfs_root=str(root), sysfs_map="0:3")
    try:
        meta = c.open()
        rows, _ = collect(c, 0.8)
    finally:
        c.close()
    assert meta["neuron:0"]["sysfs_pairing"].startswith("sysfs paired by the sysfs_map option")
    assert rows and all(r["power_util_pct"] == 18.86 for r in rows)


# --- wattprof import --samples neuron.jsonl ------------------------------------------------------------

def test_import_a_neuron_monitor_log_rebuilds_times_from_periods(tmp_path):
    from wattprof.run import Run
    run = tmp_path / "run"
    p = wattprof_in_process("import", str(run), "--samples", str(TRN2_48), "--start", "1764590400")
    assert p.returncode == 0, p.stderr
    assert "import-neuron-monitor-jsonl" in p.stderr  # detected from the first line, no --samples-format
    r = Run.open(run)
    s = r.samples
    assert sorted(set(s.device), key=lambda d: int(d.split(":")[1])) == [f"neuron:{d}" for d in range(16)]
    t = sorted(set(s.t))
    assert t[0] == pytest.approx(1764590400) and t[1] - t[0] == pytest.approx(1.0)  # the idle report's period
    busy = s[(s.device == "neuron:1") & (s.t == t[-1])]
    assert busy.util_pct.iloc[0] == 80.0 and busy.power_est_w.iloc[0] == pytest.approx(85 + 415 * 0.8)
    dev = r.devices["neuron:1"]
    assert dev["kind"] == "neuron" and dev["power_estimated"] is True
    assert dev["power_source"].startswith("estimated: utilization-based") and "no sysfs power" in dev["power_source"]


def test_import_of_a_bad_neuron_monitor_line_names_file_and_line(tmp_path):
    bad = tmp_path / "nm.jsonl"
    lines = INF2.read_text().splitlines()
    bad.write_text(lines[0] + "\n" + lines[1][:-3] + "\n" + lines[2] + "\n")
    p = wattprof_in_process("import", str(tmp_path / "run"), "--samples", str(bad), "--samples-format", "neuron-monitor-jsonl")
    assert p.returncode == 2 and "nm.jsonl:2: not JSON" in p.stderr and "Traceback" not in p.stderr


# --- ECC counters as events -------------------------------------------------------------------------

def test_ecc_counters_become_events_when_they_change(monitor, tmp_path):
    reports = [json.loads(line) for line in INF2.read_text().splitlines()]
    reports[3]["system_data"]["neuron_hw_counters"]["neuron_devices"][0]["mem_ecc_corrected"] = 3
    reports[4]["system_data"]["neuron_hw_counters"]["neuron_devices"][0]["mem_ecc_corrected"] = 3
    reports[4]["system_data"]["neuron_hw_counters"]["neuron_devices"][0]["mem_ecc_uncorrected"] = 1
    log = tmp_path / "ecc.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in reports))
    monitor(log)
    c = NeuronCollector(sysfs_root=str(tmp_path / "none"))
    try:
        c.open()
        _, errors = collect(c, 1.2)
    finally:
        c.close()
    text = "\n".join(errors)
    assert "neuron:0: corrected ECC errors in device DRAM: mem_ecc_corrected = 3 (was 0; neuron_hw_counters)" in text
    assert "neuron:0: uncorrected ECC errors in device DRAM: mem_ecc_uncorrected = 1 (was 0" in text
    assert text.count("mem_ecc_corrected = 3") == 1  # repeated reports of the same count: one event


# --- bottleneck evidence: per-core imbalance, runtime host overhead, runtime errors -------------------

def _neuron_samples(cores: dict[str, float], total_p50: float, device_p50: float, errors: int) -> pd.DataFrame:
    obj = json.loads(INF2.read_text().splitlines()[-1])
    report = obj["neuron_runtime_data"][0]["report"]
    for k, u in cores.items():
        report["neuroncore_counters"]["neuroncores_in_use"][k]["neuroncore_utilization"] = u
    report["execution_stats"]["latency_stats"]["total_latency"]["p50"] = total_p50
    report["execution_stats"]["latency_stats"]["device_latency"]["p50"] = device_p50
    report["execution_stats"]["error_summary"]["hardware"] = errors
    samples, _ = parse_report(obj)
    rows = [{"t": float(t), **s} for t in range(20) for s in samples if s["device"] != "host"]
    return pd.DataFrame(rows)


def test_bottleneck_evidence_shows_core_imbalance_and_runtime_host_overhead():
    from wattprof.analysis.bottleneck import classify_windows
    s = _neuron_samples({"0": 90.0, "1": 10.0}, total_p50=0.010, device_p50=0.003, errors=2)
    windows = pd.DataFrame({"label": ["serve"], "t_start": [0.0], "t_end": [19.0]})
    v = classify_windows(s, windows)["serve"]
    assert v.evidence["core_imbalance_pct"] == pytest.approx(80.0)
    assert v.evidence["host_overhead_frac"] == pytest.approx(0.7)
    assert v.evidence["runtime_err_per_s"] == pytest.approx(2.0)
    assert "runtime host overhead 70% of latency" in v.reason and "NeuronCore spread 80 points" in v.reason
    assert "outside the device" in v.suggestion and "NEURON_RT_VISIBLE_CORES" in v.suggestion
    balanced = classify_windows(_neuron_samples({"0": 50.0, "1": 50.0}, 0.010, 0.009, 0), windows)["serve"]
    assert balanced.evidence["core_imbalance_pct"] == 0.0 and "NeuronCore" not in balanced.reason
    assert "outside the device" not in balanced.suggestion


def test_sysfs_map_from_the_command_line_and_its_mistakes():
    from wattprof.collectors.base import parse_spec
    from wattprof.errors import InputError
    spec = parse_spec("neuron:sysfs_map=0:4+1:5,monitor=off")
    assert NeuronCollector(**spec.options).sysfs_map == {0: 4, 1: 5}
    for bad in ("0-4", "0:4+1:4", "a:b"):
        with pytest.raises(InputError, match="sysfs_map"):
            NeuronCollector(sysfs_map=bad)
