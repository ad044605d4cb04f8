"""What collectors report beside their samples reaches the run: a reading carries rows, device
updates and events, each event with its own kind. Real parts: the NVML replay backend of the H100
capture, the stand-in nvidia-smi and neuron-monitor executables in tests/bin (real subprocesses),
and a third-party plugin that uses the collector API as documented."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, NEURON

from wattprof.clock import ManualClock
from wattprof.collectors.base import Collector, Event, Reading
from wattprof.collectors.neuron import NeuronCollector
from wattprof.collectors.nvidia_smi import NvidiaSmiCollector
from wattprof.collectors.nvml import NvmlCollector, ReplayNvml, ReplayNVMLError
from wattprof.recording.recorder import Recorder
from wattprof.run import Run, RunWriter

BIN = Path(__file__).resolve().parent / "bin"
INF2 = NEURON / "neuron_monitor_inf2_xlarge_replay.jsonl"


def record(path: Path, collectors: list[Collector], seconds: float, *, tick: float = 0.05) -> Run:
    """Drive a recorder by hand on the system clock for ``seconds`` (one loop, no threads)."""
    w = RunWriter.create(path, name="events")
    rec = Recorder(w, collectors, read_timeout=None)
    rec.start(background=False)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rec.sample_once()
        time.sleep(tick)
    rec.stop()
    w.finalize(status="finished")
    return Run.open(path)


def events_of(run: Run, kind: str) -> list[dict[str, Any]]:
    ev = run.events
    if ev.empty:
        return []
    return [r for r in ev.to_dict("records") if r["kind"] == kind]


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("WATTPROF_FIXTURES", str(FIXTURES))
    monkeypatch.setenv("FAKE_NVIDIA_SMI_SPEED", "10")
    monkeypatch.setenv("FAKE_NEURON_MONITOR_SPEED", "10")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_every_restart_of_a_crash_looping_nvidia_smi_is_an_event_and_reads_never_fail(on_path, tmp_path):
    # nvidia-smi that prints two lines and exits (code 3), every time it is started: the stand-in
    # behind a wrapper, so the one-shot queries still answer
    wrapper = tmp_path / "nvidia-smi"
    wrapper.write_text(f"""#!/bin/sh
case " $* " in *" -lms "*) "{BIN / 'nvidia-smi'}" "$@" | head -n 2; exit 3;; esac
exec "{BIN / 'nvidia-smi'}" "$@"
""")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    c = NvidiaSmiCollector(executable=str(wrapper), interval_ms=50)
    c.backoff_start_s, c.backoff_max_s = 0.02, 0.05  # restart quickly: many exits in a short run
    run = record(tmp_path / "run", [c], 6.0)

    restarts = events_of(run, "collector_restart")
    assert len(restarts) >= 4, "each exit is recorded (no rate limit drops them after the third)"
    assert all("nvidia-smi exited (code 3)" in e["message"] for e in restarts)
    assert [e["exit_code"] for e in restarts[:3]] == [3, 3, 3]
    assert events_of(run, "collector_error") == []  # a restart is not a failed read
    assert (run.samples.device == "gpu:0").sum() >= 5  # the lines between the exits are kept


def test_neuron_monitor_errors_and_ecc_counters_are_events_of_their_own_kinds(on_path, tmp_path, monkeypatch):
    reports = [json.loads(line) for line in INF2.read_text().splitlines()]
    reports[3]["system_data"]["neuron_hw_counters"]["neuron_devices"][0]["mem_ecc_corrected"] = 3
    reports[3]["system_data"]["vcpu_usage"]["error"] = "open /proc/41837/stat: no such file or directory"
    for r in reports[4:]:
        r["system_data"]["neuron_hw_counters"]["neuron_devices"][0]["mem_ecc_corrected"] = 3
    log = tmp_path / "ecc.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in reports) + "not json\n")
    monkeypatch.setenv("FAKE_NEURON_MONITOR_JSONL", str(log))
    run = record(tmp_path / "run", [NeuronCollector(sysfs_root=str(tmp_path / "none"))], 1.5)

    (ecc,) = events_of(run, "ecc_errors")
    assert ecc["device"] == "neuron:0" and ecc["counter"] == "mem_ecc_corrected" and ecc["count"] == 3
    assert "corrected ECC errors in device DRAM" in ecc["message"]
    (tool,) = events_of(run, "collector_tool_error")
    assert "open /proc/41837/stat" in tool["message"]
    assert any("not JSON" in e["message"] for e in events_of(run, "collector_bad_output"))
    assert events_of(run, "collector_error") == []


def test_a_gpm_failure_mid_run_reaches_the_runs_device_metadata(h100_gpm, tmp_path):
    class Flaky(ReplayNvml):
        fail = False

        def nvmlGpmMetricsGet(self, request):  # noqa: N802 - pynvml's name
            if self.fail:
                raise ReplayNVMLError(3, "Not Supported")
            return super().nvmlGpmMetricsGet(request)

    clock = ManualClock()
    lib = Flaky(h100_gpm / "nvml_samples_10ms.csv", clock=clock, start="trace",
                gpm_trace=h100_gpm / "gpm_samples_500ms.csv")
    t0 = lib.trace.t_first
    clock.set(t0)
    w = RunWriter.create(tmp_path / "run", name="gpm", clock_time=t0)
    rec = Recorder(w, [NvmlCollector(clock=clock, nvml=lib)], clock=clock)
    rec.start(background=False)
    assert w.meta["devices"]["gpu:0"]["gpm"] == "enabled"
    for k in range(1, 31):
        lib.fail = k > 15
        clock.set(t0 + 0.1 * k)
        rec.sample_once()
    rec.stop()
    w.finalize(status="finished", ended_at=clock.time())
    run = Run.open(tmp_path / "run")
    assert run.devices["gpu:0"]["gpm"].startswith("unsupported: failed during the run")
    (missing,) = events_of(run, "metric_missing")
    assert missing["device"] == "gpu:0" and "sm_active_pct" in missing["metrics"]
    s = run.samples
    assert s.energy_j.notna().sum() == 30  # one NVML reading per tick: they go on


class Plugin(Collector):
    """A third-party collector using the documented API: emit() and update_device()."""

    name = "plugin-events"
    metrics = ("power_w",)

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.n = 0

    def open(self) -> dict[str, dict]:
        return {"gpu:7": {"kind": "gpu", "name": "plugin sensor", "power_source": "measured: plugin, calibrating"}}

    def read(self) -> list[dict[str, Any]]:
        self.n += 1
        if self.n == 2:
            self.emit("fan_alarm", "gpu:7: fan stopped", device="gpu:7", rpm=0)
            self.update_device("gpu:7", {"power_source": "measured: plugin, calibrated"})
        if self.n == 3:
            self.emit("fan_alarm", "gpu:7: fan stopped again", device="gpu:7", rpm=0)
            raise OSError("sensor busy")  # a failed read: its events are recorded all the same
        return [{"device": "gpu:7", "power_w": 10.0}]


def test_a_collectors_events_and_device_updates_reach_the_run_even_when_a_read_fails(tmp_path):
    clock = ManualClock(1000.0)
    w = RunWriter.create(tmp_path / "run", name="plugin", clock_time=clock.time())
    rec = Recorder(w, [Plugin(clock=clock)], clock=clock)
    rec.start(background=False)
    for _ in range(4):
        clock.advance(0.1)
        rec.sample_once()
    rec.stop()
    w.finalize(status="finished", ended_at=clock.time())
    run = Run.open(tmp_path / "run")
    alarms = events_of(run, "fan_alarm")
    assert [a["message"] for a in alarms] == ["plugin-events: gpu:7: fan stopped", "plugin-events: gpu:7: fan stopped again"]
    assert all(a["device"] == "gpu:7" and a["rpm"] == 0 for a in alarms)
    assert run.devices["gpu:7"]["power_source"] == "measured: plugin, calibrated"
    assert len(events_of(run, "collector_error")) == 1  # the failed read itself


def test_a_reading_is_rows_devices_and_events():
    c = Plugin()
    c.open()
    assert c.collect() == Reading([{"device": "gpu:7", "power_w": 10.0}], {}, [])
    r = c.collect()
    assert r.devices == {"gpu:7": {"power_source": "measured: plugin, calibrated"}}
    assert r.events == [Event("fan_alarm", "gpu:7: fan stopped", device="gpu:7", fields={"rpm": 0})]
    assert c.take_events() == [] and c.take_devices() == {}  # taken once
    # what older plugins queued is read as events too
    assert Event.of(("counter_reset", "went back")) == Event("counter_reset", "went back")
    assert Event.of({"kind": "device_lost", "message": "gone", "device": "gpu:1", "reason": "x"}) == \
        Event("device_lost", "gone", device="gpu:1", fields={"reason": "x"})


def test_the_plugin_example_records_its_events_and_late_metadata(tmp_path):
    import subprocess
    import sys

    example = Path(__file__).resolve().parents[1] / "examples" / "plugin" / "file_sensor.py"
    p = subprocess.run([sys.executable, str(example), str(tmp_path / "run")], capture_output=True, text=True,
                       timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    run = Run.open(tmp_path / "run")
    kinds = [e["kind"] for e in run.events.to_dict("records")]
    assert [k for k in kinds if k.startswith("sensor_")] == ["sensor_missing", "sensor_back"]
    assert "collector_error" not in kinds  # a missing file is an event of its own, not a failed read
    assert run.devices["pdu:0"]["max_seen_w"] == run.samples.power_w.max() > 100
    assert "event sensor_missing: file-sensor:" in p.stdout
