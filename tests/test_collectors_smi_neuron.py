"""The nvidia-smi and Neuron collectors against real subprocesses: replaying stand-ins for
`nvidia-smi` and `neuron-monitor` (tests/bin/, first on PATH) and a fake sysfs tree."""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, collect, wattprof

from wattprof.collectors.neuron import SYSFS_ROOT, NeuronCollector
from wattprof.collectors.nvidia_smi import NvidiaSmiCollector, parse_help_query_gpu
from wattprof.errors import InputError
from wattprof.formats.neuron_monitor import parse_report, read_neuron_monitor_jsonl
from wattprof.run import Run

BIN = Path(__file__).resolve().parent / "bin"
SMI_CSV = FIXTURES / "nvidia-h100" / "nvidia-smi-query-nounits-1s.csv"
SMI_HELP = FIXTURES / "nvidia-h100" / "nvidia-smi-help-query-gpu.txt"
NEURON_JSONL = FIXTURES / "aws-neuron" / "neuron_monitor_trn1_2xlarge_replay.jsonl"
POWER_LINE = "POWER_STATUS_VALID,1789180860,0.86,25.00,18.86\n"
ERROR_TEXT = "open /proc/41837/stat: no such file or directory"


def fake_env(**extra: str) -> dict[str, str]:
    return {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "WATTPROF_FIXTURES": str(FIXTURES),
            "FAKE_NVIDIA_SMI_SPEED": "10", "FAKE_NEURON_MONITOR_SPEED": "10", **extra}


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-ins first on PATH for collectors run in this process."""
    if not SMI_CSV.is_file() or not NEURON_JSONL.is_file():
        pytest.fail(f"fixtures missing under {FIXTURES} (set WATTPROF_FIXTURES)")
    for k, v in fake_env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def capture_column(i: int) -> list[float]:
    return [float(line.split(",")[i]) for line in SMI_CSV.read_text().splitlines() if line.strip()]


def pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def sysfs_tree(root: Path, line: str | None = POWER_LINE, devices: int = 1) -> Path:
    for n in range(devices):
        d = root / f"neuron{n}"
        (d / "stats" / "power").mkdir(parents=True)
        if line is not None:
            (d / "stats" / "power" / "utilization").write_text(line)
    return root


# --- nvidia-smi ---------------------------------------------------------------------------------------

def test_record_with_nvidia_smi_replays_the_capture_through_one_process(tmp_path):
    run, pidfile = tmp_path / "run", tmp_path / "smi.pids"
    p = wattprof("record", "--out", str(run), "-c", "nvidia-smi", "-q", "--", "sleep", "2",
                 env=fake_env(FAKE_NVIDIA_SMI_PIDFILE=str(pidfile)))
    assert p.returncode == 0, p.stderr
    r = Run.open(run)
    dev = r.devices["gpu:0"]
    assert dev["uuid"] == "GPU-1ddf2a9c-f919-d668-a1b3-8796d480affb" and dev["power_limit_w"] == 700.0
    assert dev["power_source"] == "measured: nvidia-smi power.draw (1 s average) / power.draw.instant"
    s = r.samples[r.samples.device == "gpu:0"]
    assert len(s) >= 10  # 10 lines a second for about 2 s
    # values from the capture, in schema units: power.draw -> power_avg_w, instant -> power_w, MiB -> bytes
    assert set(s.power_avg_w) <= set(capture_column(5)) and set(s.power_w) <= set(capture_column(7))
    assert set(s.mem_used_bytes) <= {v * 2**20 for v in capture_column(15)}
    assert (s.power_limit_w == 700.0).all() and s.temp_c.notna().all() and s.throttle_reasons.notna().all()
    # stamped on arrival, inside the run
    assert s.t.min() >= r.meta["started_at"] - 1 and s.t.max() <= r.meta["ended_at"]
    assert s.t.diff().dropna().between(0.0, 0.5).all()
    # one streaming process, stopped with the run
    (pid,) = pids(pidfile)
    assert not alive(pid)
    assert r.events.empty or not r.events.message.str.contains("nvidia-smi exited").any()


KILLER = """
import os, pathlib, signal, sys, time
pidfile = pathlib.Path(sys.argv[1])
while not pidfile.exists() or not pidfile.read_text().strip():
    time.sleep(0.05)
time.sleep(0.8)
pathlib.Path(sys.argv[2]).write_text(repr(time.time()))
os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
time.sleep(2.5)
"""


def test_a_killed_nvidia_smi_is_reported_and_restarted(tmp_path):
    run, pidfile, killed_at = tmp_path / "run", tmp_path / "smi.pids", tmp_path / "killed_at"
    p = wattprof("record", "--out", str(run), "-c", "nvidia-smi", "-q", "--",
                 sys.executable, "-c", KILLER, str(pidfile), str(killed_at),
                 env=fake_env(FAKE_NVIDIA_SMI_PIDFILE=str(pidfile)))
    assert p.returncode == 0, p.stderr
    t_kill = float(killed_at.read_text())
    r = Run.open(run)
    restarts = r.events[r.events.message.str.contains("nvidia-smi exited", regex=False)]
    assert len(restarts) == 1
    assert "nvidia-smi exited (code -9, killed by SIGKILL); restarting in 0.5 s" in restarts.message.iloc[0]
    assert restarts.t.iloc[0] >= t_kill
    s = r.samples
    assert (s.t < t_kill).sum() >= 3
    assert (s.t > t_kill + 0.5).sum() >= 5, "samples resume after the restart"
    assert len(pids(pidfile)) == 2 and not any(alive(x) for x in pids(pidfile))


def test_a_driver_without_power_draw_instant_is_not_asked_for_it(fakes, tmp_path, monkeypatch):
    old_help = tmp_path / "help.txt"
    # an older driver: no instant power, clock-event reasons under their old name only
    text = "".join(line for line in SMI_HELP.read_text().splitlines(keepends=True) if "power.draw.instant" not in line)
    old_help.write_text(re.sub(r'"clocks_event_reasons\.([\w.]+)" or ', "", text))
    assert "power.draw.instant" not in parse_help_query_gpu(old_help.read_text())
    monkeypatch.setenv("FAKE_NVIDIA_SMI_HELP", str(old_help))  # the stand-in refuses unknown fields too
    c = NvidiaSmiCollector(interval_ms=50)
    try:
        devices = c.open()
        rows, errors = collect(c, 1.0)
    finally:
        c.close()
    assert "power.draw.instant" not in c.fields and "clocks_throttle_reasons.active" in c.fields
    assert devices["gpu:0"]["power_source"].endswith("power.draw.instant not known to this driver")
    assert errors == [] and len(rows) >= 5
    assert all("power_w" not in r or math.isnan(r["power_w"]) for r in rows)
    assert all(r["power_avg_w"] > 100 and r["throttle_reasons"] == 0 for r in rows)


def test_cuda_visible_devices_selects_gpus_by_index(fakes, monkeypatch):
    monkeypatch.setenv("FAKE_NVIDIA_SMI_GPUS", "3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    c = NvidiaSmiCollector()
    try:
        devices = c.open()
        rows, _ = collect(c, 0.6, min_rows=1)
    finally:
        c.close()
    assert list(devices) == ["gpu:2"] and devices["gpu:2"]["cuda_index"] == 0
    assert rows and {r["device"] for r in rows} == {"gpu:2"}


def test_arrival_stamps_are_checked_against_nvidia_smis_own(fakes, monkeypatch):
    monkeypatch.setenv("FAKE_NVIDIA_SMI_TS_SHIFT_S", "-3600")  # nvidia-smi's clock an hour behind
    c = NvidiaSmiCollector(interval_ms=50)
    try:
        c.open()
        t0 = time.time()
        rows, errors = collect(c, 1.2)
    finally:
        c.close()
    assert [e for e in errors if "lines arrive +3600.0 s from their own timestamps" in e]
    assert all(abs(r["t"] - t0) < 5 for r in rows)  # still stamped on arrival
    monkeypatch.setenv("FAKE_NVIDIA_SMI_TS_SHIFT_S", "0")
    c = NvidiaSmiCollector(interval_ms=50, stamp="nvidia-smi")
    try:
        c.open()
        rows, errors = collect(c, 0.8)
    finally:
        c.close()
    assert errors == [] and rows and all(abs(r["t"] - time.time()) < 2 for r in rows)


def test_nvidia_smi_options_are_checked():
    with pytest.raises(InputError, match="interval_ms"):
        NvidiaSmiCollector(interval_ms=0)
    with pytest.raises(InputError, match="stamp"):
        NvidiaSmiCollector(stamp="gpu")


def test_nvidia_smi_availability_says_why(fakes, tmp_path, monkeypatch):
    ok, why = NvidiaSmiCollector().available()
    assert ok and why.startswith("1 GPU(s) via") and str(BIN) in why
    ok, why = NvidiaSmiCollector(executable=str(tmp_path / "nope")).available()
    assert not ok and "not an executable file" in why
    monkeypatch.setenv("FAKE_NVIDIA_SMI_NO_GPU", "1")
    ok, why = NvidiaSmiCollector().available()
    assert not ok and "lists no GPU" in why and "No devices were found" in why


@pytest.mark.skipif(Path(SYSFS_ROOT).exists() or Path("/dev/neuron0").exists(), reason="a real Neuron machine")
def test_collectors_command_explains_nvidia_smi_and_neuron(tmp_path):
    lines = {ln.split()[0]: ln for ln in wattprof("collectors", env=fake_env(), check=True).stdout.splitlines()}
    assert lines["nvidia-smi"].split()[1] == "yes" and "1 GPU(s) via" in lines["nvidia-smi"]
    assert lines["neuron"].split()[1] == "no" and "no Neuron device" in lines["neuron"]
    assert f"neuron-monitor at {BIN}" in lines["neuron"]
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    lines = {ln.split()[0]: ln for ln in wattprof("collectors", env={"PATH": str(empty)}, check=True)
             .stdout.splitlines()}
    assert lines["nvidia-smi"].split()[1] == "no" and "nvidia-smi not found on PATH" in lines["nvidia-smi"]
    assert lines["neuron"].split()[1] == "no" and "neuron-monitor not found on PATH" in lines["neuron"]


# --- neuron: the parser --------------------------------------------------------------------------------

def test_parser_reads_every_report_of_the_replay():
    log = read_neuron_monitor_jsonl(NEURON_JSONL)
    assert len(log.reports) == 9 and log.warnings == []
    first = log.reports[0]
    assert first.partial and first.info["instance_type"] == "trn1.2xlarge"
    # the partial first report claims no utilisation; the idle host after it is 0 %
    assert "util_pct" not in first.samples[0] and log.reports[1].samples[0]["util_pct"] == 0.0
    steady = {s["device"]: s for s in log.reports[4].samples}["neuron:0"]
    assert steady["util_pct"] == pytest.approx((97.82 + 96.55) / 2)
    assert steady["mem_used_bytes"] == 11748245504 and steady["mem_total_bytes"] == 34359738368
    assert steady["exec_per_s"] == pytest.approx(118 / 1.000092335)
    assert steady["latency_p50_s"] == pytest.approx(0.008421)
    assert steady["flop_per_s"] == pytest.approx(4419761200640 + 4362374103040)
    assert "latency_p50_s" not in log.reports[2].samples[0]  # null latencies: nothing ran
    errored = log.reports[7]
    assert errored.errors == [f"application pid 41837 (my_app_1) neuron_runtime_vcpu_usage: {ERROR_TEXT}"]
    assert "runtime_cpu_pct" not in errored.samples[0]  # a group with an error is not data
    assert all(r.errors == [] for i, r in enumerate(log.reports) if i != 7)


def test_parser_sums_cores_across_applications_and_maps_them_to_devices():
    app = {"pid": 1, "report": {"neuroncore_counters": {"period": 1.0, "neuroncores_in_use": {
        "0": {"neuroncore_utilization": 30}, "1": {"neuroncore_utilization": 0},
        "2": {"neuroncore_utilization": 80}, "3": {"neuroncore_utilization": 60}}, "error": ""}}}
    other = json.loads(json.dumps(app))
    other["report"]["neuroncore_counters"]["neuroncores_in_use"]["2"]["neuroncore_utilization"] = 50
    hw = {"neuron_device_count": 2, "neuroncore_per_device_count": 2, "logical_neuroncore_config": 1}
    samples, errors = parse_report({"neuron_runtime_data": [app, other], "neuron_hardware_info": hw})
    by = {s["device"]: s for s in samples}
    assert errors == [] and by["neuron:0"]["util_pct"] == 30.0  # (2 x 30 + 0) / 2
    assert by["neuron:1"]["util_pct"] == 100.0  # cores 2 and 3: 130 and 120, each capped at 100
    assert parse_report("not a report") == ([], ["report is not a JSON object"])


def test_bad_json_lines_name_their_file_and_line(tmp_path):
    bad = tmp_path / "nm.jsonl"
    lines = NEURON_JSONL.read_text().splitlines()
    bad.write_text(lines[0] + "\n{not json\n" + lines[1] + "\n")
    with pytest.raises(InputError, match=r"nm\.jsonl:2: not JSON"):
        read_neuron_monitor_jsonl(bad)
    cut = tmp_path / "cut.jsonl"
    cut.write_text(lines[0] + "\n" + lines[1][:100])
    log = read_neuron_monitor_jsonl(cut)
    assert len(log.reports) == 1 and "cut off" in log.warnings[0]


# --- neuron: the collector -----------------------------------------------------------------------------

def test_record_with_neuron_estimates_power_from_sysfs_and_reports_stream_errors(tmp_path):
    root, run, config = sysfs_tree(tmp_path / "sys"), tmp_path / "run", tmp_path / "config.json"
    p = wattprof("record", "--out", str(run), "-c", f"neuron:sysfs_root={root},max_w=400,idle_w=50", "-q",
                 "--", "sleep", "2", env=fake_env(FAKE_NEURON_MONITOR_CONFIG_COPY=str(config)))
    assert p.returncode == 0, p.stderr
    assert json.loads(config.read_text())["period"] == "1s"
    r = Run.open(run)
    dev = r.devices["neuron:0"]
    assert dev["kind"] == "neuron" and dev["name"] == "Trainium1 (trn1.2xlarge)"
    assert dev["power_source"].startswith("estimated: idle_w + max_w x neuron sysfs power utilization")
    assert dev["power_estimated"] is True and dev["max_w"] == 400 and dev["idle_w"] == 50
    s = r.samples[r.samples.device == "neuron:0"]
    assert len(s) >= 9  # every report, the partial first one included, and the repeats
    assert s.power_est_w.to_numpy() == pytest.approx([50 + 18.86 / 100 * 400] * len(s))
    util = set(s.util_pct.dropna().round(3))
    assert {0.0, round((97.82 + 96.55) / 2, 3), round((37.41 + 35.92) / 2, 3)} <= util
    assert (s.mem_total_bytes == 34359738368).all()
    errors = r.events[r.events.message.str.contains(ERROR_TEXT, regex=False)]
    assert len(errors) == 1 and errors.kind.iloc[0] == "collector_tool_error"  # its own kind, not a failed read
    assert "host" not in set(r.samples.device)  # host metrics are the host collector's unless asked for


def test_without_a_power_file_power_is_a_utilisation_estimate(fakes, tmp_path):
    root = sysfs_tree(tmp_path / "sys", line=None)
    c = NeuronCollector(sysfs_root=str(root), max_w=400, idle_w=50)
    assert c.available() == (True, f"1 Neuron device(s); neuron-monitor at {BIN / 'neuron-monitor'}; "
                                   "power estimated from NeuronCore utilization (no sysfs power file)")
    try:
        devices = c.open()
        rows, errors = collect(c, 1.2)
    finally:
        c.close()
    assert devices["neuron:0"]["power_source"].startswith("estimated: utilization-based, idle_w + (max_w - idle_w)")
    with_util = [r for r in rows if "util_pct" in r]
    assert len(with_util) >= 5 and any(r["util_pct"] > 90 for r in with_util)
    for r in with_util:
        assert r["power_est_w"] == pytest.approx(50 + 350 * r["util_pct"] / 100)
    assert [e for e in errors if ERROR_TEXT in e] != []
    assert all("power_est_w" not in r for r in rows if "util_pct" not in r)  # the partial first report


def test_a_type_without_a_known_max_w_is_labelled_unestimated(fakes, tmp_path):
    c = NeuronCollector(sysfs_root=str(sysfs_tree(tmp_path / "sys")), device_type="trn3")
    try:
        devices = c.open()
        rows, _ = collect(c, 0.5)
    finally:
        c.close()
    meta = devices["neuron:0"]
    assert meta["power_source"].startswith("none: no known maximum power for Trainium3")
    assert "max_w=WATTS" in meta["power_source"] and meta["power_estimated"] is False
    assert rows and all("power_est_w" not in r for r in rows)


def test_sysfs_without_valid_data_falls_back_and_says_so(fakes, tmp_path):
    root = sysfs_tree(tmp_path / "sys", line="POWER_STATUS_NO_DATA,1789180860,0.00,0.00,0.00\n")
    c = NeuronCollector(sysfs_root=str(root), max_w=400, idle_w=50)
    try:
        c.open()
        rows, errors = collect(c, 0.6)
        (root / "neuron0" / "stats" / "power" / "utilization").write_text(POWER_LINE)
        later, errors2 = collect(c, 0.6)
    finally:
        c.close()
    assert any("neuron0: sysfs power utilization is POWER_STATUS_NO_DATA; power estimated from NeuronCore "
               "utilization meanwhile" in e for e in errors)
    assert all(r["power_est_w"] == pytest.approx(50 + 350 * r["util_pct"] / 100) for r in rows if "util_pct" in r)
    assert any("is POWER_STATUS_VALID" in e for e in errors2)
    assert later and later[-1]["power_est_w"] == pytest.approx(50 + 0.1886 * 400)


def test_sysfs_alone_gives_power_with_the_device_type_default(tmp_path):
    root = sysfs_tree(tmp_path / "sys", devices=2)
    c = NeuronCollector(sysfs_root=str(root), monitor="off", device_type="inf2", period_s=1)
    assert c.available()[0]
    try:
        devices = c.open()
        rows, errors = collect(c, 1.3)
    finally:
        c.close()
    assert set(devices) == {"neuron:0", "neuron:1"} and errors == []
    assert devices["neuron:1"]["max_w"] == 100.0 and devices["neuron:1"]["max_w_from"].startswith("default for Inferentia2")
    assert devices["neuron:0"]["power_source"].startswith("estimated: idle_w + max_w x neuron sysfs")
    assert all(r["power_est_w"] == pytest.approx(17 + 18.86) for r in rows)  # idle floor 17 W + 18.86 % of 100 W
    for dev in ("neuron:0", "neuron:1"):  # one row per device per period_s, not per read()
        t = [r["t"] for r in rows if r["device"] == dev]
        assert len(t) >= 2 and min(b - a for a, b in zip(t, t[1:], strict=False)) >= 0.99


def test_a_dead_neuron_monitor_is_reported_and_restarted(fakes, tmp_path, monkeypatch):
    pidfile = tmp_path / "nm.pids"
    monkeypatch.setenv("FAKE_NEURON_MONITOR_PIDFILE", str(pidfile))
    c = NeuronCollector(sysfs_root=str(sysfs_tree(tmp_path / "sys")), max_w=400)
    try:
        c.open()
        collect(c, 0.3)
        os.kill(pids(pidfile)[0], 9)
        rows, errors = collect(c, 1.5)
    finally:
        c.close()
    assert any("neuron-monitor exited (code -9, killed by SIGKILL); restarting in 0.5 s" in e for e in errors)
    assert len(pids(pidfile)) == 2 and not any(alive(x) for x in pids(pidfile))
    assert rows


def test_neuron_options_are_checked():
    with pytest.raises(InputError, match="whole number of seconds"):
        NeuronCollector(period_s=1.5)
    with pytest.raises(InputError, match="device_type"):
        NeuronCollector(device_type="tpu")
    with pytest.raises(InputError, match="idle_w"):
        NeuronCollector(max_w=50, idle_w=60)
