"""Collectors: NVML through the replay backend, the host, the registry and plugin entry points."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from wattprof.clock import ManualClock
from wattprof.collectors import base
from wattprof.collectors.host import HostCollector
from wattprof.collectors.nvml import NvmlReplayCollector, parse_visible_devices
from wattprof.errors import DeviceLostError, InputError


def test_nvml_collector_reads_the_trace_values_in_schema_units(h100):
    raw = pd.read_csv(h100 / "nvml_samples_10ms.csv")
    clock = ManualClock(raw.t.iloc[0])
    c = NvmlReplayCollector(clock=clock, trace=str(h100 / "nvml_samples_10ms.csv"), start="trace")
    devices = c.open()
    assert devices["gpu:0"]["uuid"] == "GPU-1ddf2a9c-f919-d668-a1b3-8796d480affb"
    assert devices["gpu:0"]["power_limit_w"] == 700.0
    row_i = 2000
    clock.set(raw.t.iloc[row_i])
    (s,) = c.read()
    r = raw.iloc[row_i]
    assert s["device"] == "gpu:0" and s["t"] == r.t
    assert s["energy_j"] == r.energy_mj / 1000
    assert s["power_w"] == r.power_instant_mw / 1000 and s["power_avg_w"] == r.power_average_mw / 1000
    assert (s["util_pct"], s["mem_util_pct"], s["sm_clock_mhz"], s["temp_c"]) == (
        r.util_gpu, r.util_mem, r.clock_sm_mhz, r.temp_c)
    assert s["throttle_reasons"] == r.clocks_event_reasons and s["mem_used_bytes"] == r.mem_used_b
    c.close()


def test_replay_loops_with_a_still_increasing_counter(h100):
    raw = pd.read_csv(h100 / "nvml_samples_10ms.csv")
    span = raw.t.iloc[-1] - raw.t.iloc[0]
    clock = ManualClock(0.0)
    c = NvmlReplayCollector(clock=clock, trace=str(h100 / "nvml_samples_10ms.csv"), start="open")
    c.open()
    e = []
    for t in np.arange(0, 2.5 * span, 1.0):
        clock.set(t)
        e.append(c.read()[0]["energy_j"])
    assert np.all(np.diff(e) >= 0)
    assert e[-1] - e[0] > 2 * (raw.energy_mj.iloc[-1] - raw.energy_mj.iloc[0]) / 1000


def test_a_lost_gpu_is_dropped_alone_and_losing_every_gpu_is_a_typed_error(h100):
    clock = ManualClock(0.0)
    c = NvmlReplayCollector(clock=clock, trace=str(h100 / "nvml_samples_10ms.csv"), devices=2)
    assert set(c.open()) == {"gpu:0", "gpu:1"}
    c.nvml.lost.add(1)
    assert [r["device"] for r in c.read()] == ["gpu:0"]
    (lost,) = c.take_events()
    assert (lost.kind, lost.device) == ("device_lost", "gpu:1") and "gpu:0" in lost.message
    clock.advance(0.1)
    assert [r["device"] for r in c.read()] == ["gpu:0"]  # gpu:1 is not asked again
    c.nvml.lost.add(0)
    with pytest.raises(DeviceLostError, match="lost"):
        c.read()
    c.close()


def test_cuda_visible_devices_selects_and_orders_by_uuid(h100, monkeypatch):
    uuids = ["GPU-aaaa-1", "GPU-bbbb-2", "GPU-cccc-3"]
    assert parse_visible_devices(None, uuids) == [(0, False), (1, False), (2, False)]
    assert parse_visible_devices("", uuids) == []
    assert parse_visible_devices("2,0", uuids) == [(2, False), (0, False)]
    assert parse_visible_devices("GPU-bbbb,7,0", uuids) == [(1, False)]  # stops at the first invalid entry
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    c = NvmlReplayCollector(clock=ManualClock(0.0), trace=str(h100 / "nvml_samples_10ms.csv"), devices=4)
    devs = c.open()
    assert list(devs) == ["gpu:3", "gpu:1"]
    assert devs["gpu:3"]["cuda_index"] == 0 and devs["gpu:1"]["cuda_index"] == 1
    assert [r["device"] for r in c.read()] == ["gpu:3", "gpu:1"]


def test_host_collector_estimates_without_rapl_and_says_so(tmp_path):
    c = HostCollector(rapl_root=str(tmp_path / "none"))
    dev = c.open()["host"]
    assert dev["power_source"].startswith("estimated")
    (s,) = c.read()
    assert "energy_j" not in s and s["power_est_w"] > 0 and 0 <= s["cpu_util_pct"] <= 100
    ncpu = dev["vcpus"]
    lo = ncpu * 0.74 + s["mem_total_bytes"] / 1e9 * 0.392
    assert lo <= s["power_est_w"] <= lo + ncpu * (3.5 - 0.74) + 1e-9


def test_host_collector_reads_rapl_and_unwraps_the_counter(tmp_path):
    zone = tmp_path / "intel-rapl:0"
    (tmp_path / "intel-rapl:0:0").mkdir(parents=True)  # a sub-zone: must not be double counted
    zone.mkdir()
    (zone / "max_energy_range_uj").write_text("1000000\n")
    (zone / "energy_uj").write_text("900000\n")
    (tmp_path / "intel-rapl:0:0" / "energy_uj").write_text("5\n")
    c = HostCollector(rapl_root=str(tmp_path))
    assert c.open()["host"]["power_source"].startswith("measured: RAPL (1 package zone")
    (zone / "energy_uj").write_text("950000\n")
    assert c.read()[0]["energy_j"] == pytest.approx(0.05)
    (zone / "energy_uj").write_text("100000\n")  # wrapped past 1 J
    assert c.read()[0]["energy_j"] == pytest.approx(0.05 + 0.15)


def test_spec_parsing_and_unknown_names():
    s = base.parse_spec("nvml-replay:trace=/x.csv,devices=8,speed=1.5")
    assert s.name == "nvml-replay" and s.options == {"trace": "/x.csv", "devices": 8, "speed": 1.5}
    with pytest.raises(InputError, match="unknown collector 'gpu9'"):
        base.create("gpu9")
    with pytest.raises(InputError, match="not KEY=VALUE"):
        base.parse_spec("host:oops")
    with pytest.raises(InputError, match=r"unknown option 'nosuch' \(options of host: rapl_root=, vcpu_min_w="):
        base.create("host:nosuch=1")


def test_a_third_party_collector_registers_through_entry_points(tmp_path):
    """A real distribution on sys.path declares `wattprof.collectors`; wattprof lists and uses it."""
    pkg = tmp_path / "site"
    (pkg / "acme_power").mkdir(parents=True)
    (pkg / "acme_power" / "__init__.py").write_text(textwrap.dedent("""
        from wattprof.collectors.base import Collector
        class AcmeCollector(Collector):
            name = "acme"
            metrics = ("power_w",)
            def available(self):
                return True, "acme meter on /dev/acme0"
            def open(self):
                return {"gpu:9": {"name": "Acme"}}
            def read(self):
                return [{"device": "gpu:9", "power_w": 42.0}]
    """))
    dist = pkg / "acme_power-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-power\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[wattprof.collectors]\nacme = acme_power:AcmeCollector\n")
    env = {"PYTHONPATH": str(pkg)}
    from conftest import wattprof

    listing = wattprof("collectors", env=env, check=True).stdout
    assert "acme" in listing and "acme meter on /dev/acme0" in listing
    run = tmp_path / "run"
    wattprof("record", "-q", "-c", "acme", "--interval", "0.05", "--out", str(run), "--",
             sys.executable, "-c", "import time; time.sleep(0.5)", env=env, check=True)
    from wattprof.run import Run

    r = Run.open(run)
    assert (r.samples["power_w"] == 42.0).sum() >= 5 and r.devices["gpu:9"]["name"] == "Acme"


def test_collectors_command_explains_each(tmp_path):
    from conftest import wattprof

    out = wattprof("collectors", check=True).stdout
    lines = {ln.split()[0]: ln for ln in out.splitlines()}
    assert set(lines) >= {"nvml", "nvml-replay", "host"}
    # on a machine without a GPU NVML says why; on one with a GPU it says how many
    assert ("no" in lines["nvml"].split()[1] and "NVML" in lines["nvml"]) or "GPU(s) via NVML" in lines["nvml"]
