"""The NVML collector's live path on real machines, behind the real pynvml module's surface
(:mod:`nvml_strict`): MIG, partial failures, GPUs without permission, lost GPUs, old drivers and
bindings. Values come from the real H100 capture; calls, types and errors are the real pynvml's."""

from __future__ import annotations

import pandas as pd
import pynvml
import pytest
from nvml_strict import StrictNvml

from wattprof.clock import ManualClock
from wattprof.collectors.nvml import NvmlCollector, ReplayNvml
from wattprof.errors import CollectorError, DeviceLostError
from wattprof.recording.recorder import Recorder
from wattprof.reports.build import build_report
from wattprof.reports.text import render as render_text
from wattprof.run import Run, RunWriter

ALL = ("energy_j", "power_w", "power_avg_w", "util_pct", "mem_util_pct", "mem_used_bytes", "sm_clock_mhz",
       "temp_c", "throttle_reasons")


@pytest.fixture
def clock():
    return ManualClock(0.0)


@pytest.fixture
def make(h100, clock, monkeypatch):
    """``make(n)``: a StrictNvml over ``n`` replayed H100s (the real capture), on ``clock``."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def make(n: int = 2, **kw) -> StrictNvml:
        return StrictNvml(ReplayNvml(h100 / "nvml_samples_10ms.csv", clock=clock, devices=n, **kw))

    return make


def sweep(c: NvmlCollector, clock: ManualClock, reads: int, step: float = 0.1) -> pd.DataFrame:
    rows = []
    for _ in range(reads):
        clock.advance(step)
        rows.extend(c.read())
    return pd.DataFrame(rows)


# --- the strict fake ---------------------------------------------------------------------------------

def test_the_strict_fake_rejects_wrong_arguments_that_the_replay_accepts(make):
    lib = make(1)
    replay = lib._b
    replay.nvmlInit()
    lib.nvmlInit()
    # An int where pynvml wants a c_nvmlDevice_t: the replay's handles are ints, so it answers;
    # ctypes would pass the int as a pointer to a real driver.
    assert replay.nvmlDeviceGetTotalEnergyConsumption(0) > 0
    with pytest.raises(TypeError, match="c_nvmlDevice_t"):
        lib.nvmlDeviceGetTotalEnergyConsumption(0)
    h = lib.nvmlDeviceGetHandleByIndex(0)
    assert isinstance(h, pynvml.c_nvmlDevice_t)
    # A clock type NVML does not know: the replay answers with the memory clock; NVML refuses it
    # with the real NVMLError subclass.
    assert replay.nvmlDeviceGetClockInfo(0, 7) > 0
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        lib.nvmlDeviceGetClockInfo(h, 7)
    # Keywords are bound to the real function's signature.
    assert replay.nvmlDeviceGetFieldValues(0, field_ids=[186])[0].nvmlReturn == 0
    with pytest.raises(TypeError):
        lib.nvmlDeviceGetFieldValues(h, field_ids=[186])
    # Only names the installed pynvml has.
    with pytest.raises(AttributeError):
        lib.nvmlDeviceGetPowerDrawNow  # noqa: B018
    fv = lib.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_POWER_INSTANT])
    assert isinstance(fv[0], pynvml.c_nvmlFieldValue_t) and fv[0].value.uiVal > 0


def test_the_collector_reads_the_same_values_through_the_real_surface(make, clock):
    lib = make(2)
    c = NvmlCollector(clock=clock, nvml=lib)
    devices = c.open()
    assert list(devices) == ["gpu:0", "gpu:1"] and devices["gpu:0"]["power_limit_w"] == 700.0
    clock.advance(20.0)
    rows = c.read()
    want = lib._b
    assert [r["device"] for r in rows] == ["gpu:0", "gpu:1"]
    r = rows[0]
    assert set(ALL) <= set(r)
    assert r["energy_j"] == want.nvmlDeviceGetTotalEnergyConsumption(0) / 1000
    assert r["power_w"] == want.nvmlDeviceGetFieldValues(0, [186])[0].value.uiVal / 1000
    assert r["util_pct"] == want.nvmlDeviceGetUtilizationRates(0).gpu
    assert c.take_events() == []
    c.close()
    assert want._inits == 0


# --- 1. MIG / NOT_SUPPORTED ----------------------------------------------------------------------------

def test_a_gpu_in_mig_mode_is_measured_without_utilisation_noted_once(make, clock):
    lib = make(2)
    lib.mig(1)
    c = NvmlCollector(clock=clock, nvml=lib)
    c.open()
    df = sweep(c, clock, 20)
    assert (df.groupby("device").size() == 20).all()
    g0, g1 = df[df.device == "gpu:0"], df[df.device == "gpu:1"]
    assert g0.util_pct.notna().all()
    assert g1.util_pct.isna().all() and g1.mem_util_pct.isna().all()
    assert g1.energy_j.notna().all() and g1.power_w.notna().all() and g1.temp_c.notna().all()
    events = c.take_events()
    missing = [e for e in events if e.kind == "metric_missing"]
    assert [(e.device, e.fields["metrics"]) for e in missing] == [("gpu:1", ["util_pct", "mem_util_pct"])]
    assert "MIG" in missing[0].fields["reason"]
    # NOT_SUPPORTED is remembered: the function is not asked again on that GPU
    assert lib.log.count(("nvmlDeviceGetUtilizationRates", 1)) == 1
    c.close()


def test_a_gpu_without_an_energy_counter_says_so_and_keeps_its_power(make, clock):
    lib = make(2)
    lib.fault("nvmlDeviceGetTotalEnergyConsumption", pynvml.NVML_ERROR_NOT_SUPPORTED, device=1)  # pre-Volta
    c = NvmlCollector(clock=clock, nvml=lib)
    devices = c.open()
    assert "no energy counter" in devices["gpu:1"]["power_source"]
    assert "energy counter" in devices["gpu:0"]["power_source"] and "no energy" not in devices["gpu:0"]["power_source"]
    df = sweep(c, clock, 5)
    g1 = df[df.device == "gpu:1"]
    assert len(g1) == 5 and g1.energy_j.isna().all() and g1.power_w.notna().all() and g1.power_avg_w.notna().all()
    assert df[df.device == "gpu:0"].energy_j.notna().all()
    assert [(e.kind, e.fields["metrics"]) for e in c.take_events()] == [("metric_missing", ["energy_j"])]
    c.close()


def test_a_mig_slice_in_cuda_visible_devices_measures_its_parent_gpu(make, clock, monkeypatch):
    lib = make(3)
    slices = lib.mig(2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{slices[1]},{slices[0]}")
    c = NvmlCollector(clock=clock, nvml=lib)
    devices = c.open()
    assert list(devices) == ["gpu:2"] and devices["gpu:2"]["shared"] is True
    assert "MIG" in devices["gpu:2"]["note"]
    assert not any(i in (0, 1) for _, i in lib.log if _ == "nvmlDeviceGetHandleByIndex")
    clock.advance(0.1)
    (row,) = c.read()
    assert row["device"] == "gpu:2" and row["energy_j"] > 0 and "util_pct" not in row
    c.close()


# --- 2. one device's error does not cost the others ------------------------------------------------------

def test_a_transient_error_on_one_gpu_drops_only_its_reading(make, clock):
    lib = make(3)
    lib.fault("nvmlDeviceGetUtilizationRates", pynvml.NVML_ERROR_TIMEOUT, device=1, when=lambda n: n % 10 == 9)
    c = NvmlCollector(clock=clock, nvml=lib)
    c.open()
    df = sweep(c, clock, 30)
    assert df.groupby("device").size().to_dict() == {"gpu:0": 30, "gpu:1": 27, "gpu:2": 30}
    errors = [e for e in c.take_events() if e.kind == "device_read_error"]
    assert [e.device for e in errors] == ["gpu:1"] * 3 and errors[-1].fields["dropped"] == 3
    assert "Timeout" in errors[0].message
    c.close()


def test_a_lost_gpu_is_dropped_alone_and_the_others_go_on(make, clock):
    lib = make(3)
    c = NvmlCollector(clock=clock, nvml=lib)
    c.open()
    sweep(c, clock, 5)
    lib.lose(1)
    df = sweep(c, clock, 10)
    assert df.groupby("device").size().to_dict() == {"gpu:0": 10, "gpu:2": 10}
    lost = [e for e in c.take_events() if e.kind == "device_lost"]
    assert [e.device for e in lost] == ["gpu:1"]
    asked = [d for _, d in lib.log].count(1)
    sweep(c, clock, 10)
    assert [d for _, d in lib.log].count(1) == asked  # a lost GPU is not asked again
    lib.lose(0)
    lib.lose(2)
    with pytest.raises(DeviceLostError):
        c.read()
    c.close()


def test_in_a_recorded_run_a_lost_gpu_is_noted_on_its_device_and_the_last_one_stops_the_collector(make, clock,
                                                                                                  tmp_path):
    lib = make(2)
    w = RunWriter.create(tmp_path / "run", name="lost", clock_time=clock.time())
    rec = Recorder(w, [NvmlCollector(clock=clock, nvml=lib)], clock=clock)
    rec.start(background=False)
    for k in range(30):
        if k == 10:
            lib.lose(1)
        if k == 20:
            lib.lose(0)  # the last one: the collector stops
        clock.advance(0.1)
        rec.sample_once()
    rec.stop()
    w.finalize(status="finished", ended_at=clock.time())
    run = Run.open(tmp_path / "run")
    lost = run.events[run.events.kind == "device_lost"]
    assert list(lost.device.fillna("-")) == ["gpu:1", "-"]
    assert "the other GPUs go on (gpu:0)" in lost.message.iloc[0]
    assert "GPU is lost: gpu:0" in lost.message.iloc[1] and "collector stopped" in lost.message.iloc[1]
    per_dev = run.samples.groupby("device").size().to_dict()
    assert per_dev == {"gpu:0": 20, "gpu:1": 10}  # gpu:0 went on after gpu:1 was lost
    notes = {d.device: d.notes for d in build_report(run, bottlenecks=False).devices}
    assert any("lost during the run" in n for n in notes["gpu:1"])


# --- 3. only the selected GPUs are opened ---------------------------------------------------------------

def test_open_resolves_only_the_selected_gpus(make, clock, monkeypatch):
    lib = make(4)
    lib.deny(2)  # cgroup device limits: counted by nvmlDeviceGetCount, handle refused
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,0")
    c = NvmlCollector(clock=clock, nvml=lib)
    assert list(c.open()) == ["gpu:3", "gpu:0"]
    assert {d for _, d in lib.log if d is not None} == {0, 3}  # gpu:1 and gpu:2 never asked for
    events = c.take_events()
    assert {(e.kind, e.device) for e in events} == {("device_unselected", "gpu:1"),
                                                          ("device_unselected", "gpu:2")}
    c.close()


def test_a_selected_gpu_without_permission_is_skipped_and_uuids_still_match(make, clock, monkeypatch):
    lib = make(3)
    lib.deny(0)
    uuid2 = lib._b.nvmlDeviceGetUUID(2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"0,{uuid2},1")
    c = NvmlCollector(clock=clock, nvml=lib)
    devices = c.open()
    assert list(devices) == ["gpu:2", "gpu:1"]
    assert devices["gpu:2"]["cuda_index"] == 1  # CUDA order kept
    skipped = [e for e in c.take_events() if e.kind == "device_skipped"]
    assert [e.device for e in skipped] == ["gpu:0"] and "Insufficient Permissions" in skipped[0].message
    clock.advance(0.1)
    assert [r["device"] for r in c.read()] == ["gpu:2", "gpu:1"]
    c.close()


# --- 4. old drivers and bindings -------------------------------------------------------------------------

def test_an_old_driver_falls_back_to_throttle_reasons(make, clock):
    lib = make(1)
    lib.old_driver("nvmlDeviceGetCurrentClocksEventReasons")  # before R535: FUNCTION_NOT_FOUND
    c = NvmlCollector(clock=clock, nvml=lib)
    c.open()
    df = sweep(c, clock, 5)
    assert df.throttle_reasons.notna().all()
    assert df.throttle_reasons.iloc[-1] == lib._b.nvmlDeviceGetCurrentClocksEventReasons(0)
    assert lib.log.count(("nvmlDeviceGetCurrentClocksEventReasons", 0)) == 1  # the fallback is remembered
    assert lib.log.count(("nvmlDeviceGetCurrentClocksThrottleReasons", 0)) == 5
    assert c.take_events() == []
    c.close()


def test_a_function_the_bindings_lack_is_a_missing_metric_not_an_attribute_error(make, clock):
    lib = make(1)
    lib.hide("nvmlDeviceGetTemperature")  # marked for removal in newer bindings
    c = NvmlCollector(clock=clock, nvml=lib)
    c.open()
    df = sweep(c, clock, 3)
    if hasattr(pynvml, "nvmlDeviceGetTemperatureV"):  # newer bindings: the replacement answers
        assert df.temp_c.notna().all() and c.take_events() == []
    lib.hide("nvmlDeviceGetTemperatureV")
    c2 = NvmlCollector(clock=clock, nvml=lib)
    c2.open()
    df = sweep(c2, clock, 3)
    assert "temp_c" not in df.columns and df.energy_j.notna().all()
    (ev,) = c2.take_events()
    assert ev.kind == "metric_missing" and ev.fields["metrics"] == ["temp_c"]
    assert "not in the NVML bindings" in ev.fields["reason"]
    c.close()
    c2.close()


# --- 5. available() and a failed open ------------------------------------------------------------------

def test_available_says_why_when_the_gpus_cannot_be_counted(make, clock):
    lib = make(1)
    lib.fault("nvmlDeviceGetCount", pynvml.NVML_ERROR_UNKNOWN)
    ok, reason = NvmlCollector(clock=clock, nvml=lib).available()
    assert not ok and "Unknown Error" in reason
    assert lib._b._inits == 0


def test_a_failed_open_releases_nvml_and_the_gpm_samples(h100_gpm, clock, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    trace, gpm = h100_gpm / "nvml_samples_10ms.csv", h100_gpm / "gpm_samples_500ms.csv"
    lib = StrictNvml(ReplayNvml(trace, clock=clock, devices=2, gpm_trace=gpm))
    # gpu:0 opens with GPM (two samples), gpu:1 is lost while its GPM is set up: skipped alone,
    # its samples freed.
    lib.fault("nvmlGpmSampleGet", pynvml.NVML_ERROR_GPU_IS_LOST, device=1)
    c = NvmlCollector(clock=clock, nvml=lib)
    assert list(c.open()) == ["gpu:0"] and lib._b.gpm_samples_live == 2
    c.close()
    assert lib._b.gpm_samples_live == 0 and lib._b._inits == 0
    # Nothing selected opens: an error, and nothing left behind.
    lib.fault("nvmlGpmSampleGet", pynvml.NVML_ERROR_GPU_IS_LOST, device=0)
    c = NvmlCollector(clock=clock, nvml=lib)
    with pytest.raises(CollectorError, match="none of the selected GPUs"):
        c.open()
    assert lib._b.gpm_samples_live == 0 and lib._b._inits == 0
    # A failure before any GPU: the same.
    lib.fault("nvmlDeviceGetCount", pynvml.NVML_ERROR_UNKNOWN)
    with pytest.raises(CollectorError, match="Unknown Error"):
        NvmlCollector(clock=clock, nvml=lib).open()
    assert lib._b._inits == 0


# --- the acceptance scenario -------------------------------------------------------------------------------

def test_mig_denied_timeouts_and_a_lost_gpu_leave_the_others_energy_complete(make, clock, monkeypatch, tmp_path):
    """GPU 1 in MIG mode, GPU 2 not selected and without permission, a TIMEOUT on GPU 0 once per
    10 reads, GPU 3 lost mid-run: GPUs 0 and 1 have their whole energy; the report says, per
    device, what was missing."""
    lib = make(4, start="trace")  # the clock runs in the capture's time
    lib.mig(1)
    lib.deny(2)
    lib.fault("nvmlDeviceGetTotalEnergyConsumption", pynvml.NVML_ERROR_TIMEOUT, device=0,
              when=lambda n: n % 10 == 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,3")
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    c = NvmlCollector(clock=clock, nvml=lib)
    clock.set(lib._b.trace.t_first + 10.0)
    w = RunWriter.create(tmp_path / "r")
    rec = Recorder(w, [c], interval=0.1, clock=clock)
    rec.start(background=False)
    for k in range(300):  # 30 s
        clock.advance(0.1)
        if k == 150:
            lib.lose(3)
        rec.sample_once()
    rec.stop()
    w.finalize(status="finished")
    run = Run.open(tmp_path / "r")
    s = run.samples
    assert s.groupby("device").size().to_dict() == {"gpu:0": 270, "gpu:1": 300, "gpu:3": 150}
    # Complete energy: the counter's first-to-last difference equals the trace's own over the run.
    truth = lib._b
    truth.nvmlInit()
    for dev, gpu in (("gpu:0", 0), ("gpu:1", 1)):
        e = s[s.device == dev].energy_j
        clock.set(float(s[s.device == dev].t.iloc[0]))
        e0 = truth.nvmlDeviceGetTotalEnergyConsumption(gpu) / 1000
        clock.set(float(s[s.device == dev].t.iloc[-1]))
        e1 = truth.nvmlDeviceGetTotalEnergyConsumption(gpu) / 1000
        assert e.iloc[-1] - e.iloc[0] == pytest.approx(e1 - e0) and e1 > e0
    report = build_report(run, bottlenecks=False)
    by_dev = {d.device: d for d in report.devices}
    for dev in ("gpu:0", "gpu:1"):
        assert by_dev[dev].energy_source == "counter"
        assert by_dev[dev].energy_j == pytest.approx(float(s[s.device == dev].energy_j.iloc[-1]
                                                           - s[s.device == dev].energy_j.iloc[0]), rel=1e-9)
    notes = {dev: " | ".join(d.notes) for dev, d in by_dev.items()}
    assert "util_pct, mem_util_pct not recorded" in notes["gpu:1"] and "MIG" in notes["gpu:1"]
    assert "reading(s) dropped" in notes["gpu:0"] and "Timeout" in notes["gpu:0"]
    assert "lost during the run" in notes["gpu:3"]
    assert "gpu:2" not in by_dev and not any("gpu:2" in f for f in report.flags)  # unselected: not a gap
    text = render_text(report)
    assert "gpu:1: util_pct, mem_util_pct not recorded" in text
    assert "gpu:3: lost during the run" in text
    kinds = run.events.groupby("kind").size().to_dict()
    assert kinds["device_unselected"] == 1 and kinds["device_lost"] == 1 and kinds["metric_missing"] == 1


def test_gpm_through_the_real_ctypes_structures_matches_the_replay(h100_gpm, monkeypatch):
    """GPM samples, the c_nvmlGpmMetricsGet_t request and its metrics array are pynvml's own
    ctypes types here; the rows equal those of the lax replay, PCIe/NVLink in MB/s."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    trace, gpm = h100_gpm / "nvml_samples_10ms.csv", h100_gpm / "gpm_samples_500ms.csv"
    frames = []
    for strict in (True, False):
        clock = ManualClock(0.0)
        replay = ReplayNvml(trace, clock=clock, gpm_trace=gpm)
        c = NvmlCollector(clock=clock, nvml=StrictNvml(replay) if strict else replay)
        assert c.open()["gpu:0"]["gpm"] == "enabled"
        df = sweep(c, clock, 100)
        c.close()
        assert replay.gpm_samples_live == 0
        frames.append(df[df.sm_active_pct.notna()].reset_index(drop=True))
    strict_rows, lax_rows = frames
    assert len(strict_rows) == 20
    pd.testing.assert_frame_equal(strict_rows, lax_rows)
    assert strict_rows[["sm_active_pct", "pcie_tx_mbps", "nvlink_rx_mbps"]].notna().all().all()
