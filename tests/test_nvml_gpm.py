"""NVML GPM activity in the NVML collector, through the replay of the real H100 GPM capture."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from wattprof.clock import ManualClock
from wattprof.collectors import base
from wattprof.collectors.nvml import (
    ERROR_NOT_SUPPORTED,
    GPM_COLUMNS,
    GPM_FUNCTIONS,
    GPM_METRIC_IDS,
    GPM_METRIC_MAX,
    GPM_METRICS_GET_VERSION,
    NvmlCollector,
    NvmlReplayCollector,
    ReplayNvml,
    ReplayNVMLError,
)
from wattprof.errors import DeviceLostError, InputError
from wattprof.formats.gpm_csv import CSV_COLUMN_MAP, GPM_COLUMN_MAP, read_gpm_csv
from wattprof.recording.recorder import Recorder
from wattprof.run import Run, RunWriter

NVML_COLUMNS = ("energy_j", "power_w", "util_pct")


def paths(d):
    return str(d / "nvml_samples_10ms.csv"), str(d / "gpm_samples_500ms.csv")


def sweep(c: NvmlCollector, clock: ManualClock, t0: float, t1: float, step: float = 0.1) -> pd.DataFrame:
    """Open ``c`` at ``t0`` and read it every ``step`` seconds up to ``t1`` (manual clock)."""
    clock.set(t0)
    c.open()
    rows = []
    for k in range(1, int(round((t1 - t0) / step)) + 1):
        clock.set(t0 + k * step)
        rows.extend(c.read())
    return pd.DataFrame(rows)


def window_mean(raw: pd.DataFrame, col: str, a: float, b: float) -> float:
    """Time-weighted mean of the recorded GPM windows over [a, b] (independent of the replay)."""
    overlap = np.clip(np.minimum(raw.t_end, b) - np.maximum(raw.t_start, a), 0, None)
    return float((raw[col] * overlap).sum() / overlap.sum())


@pytest.fixture
def swept(h100_gpm):
    trace, gpm = paths(h100_gpm)
    nvml = pd.read_csv(trace)
    clock = ManualClock()
    c = NvmlReplayCollector(clock=clock, trace=trace, gpm_trace=gpm, start="trace")
    t0 = float(nvml.t.iloc[0])
    df = sweep(c, clock, t0, float(nvml.t.iloc[-1]))
    yield c, df, t0
    c.close()


def test_gpm_rows_come_every_half_second_stamped_at_their_window_midpoint(swept, h100_gpm):
    c, df, t0 = swept
    assert c.gpm_status == {"gpu:0": "enabled"}
    gpm = df[df[list(GPM_COLUMNS)].notna().any(axis=1)]
    nvml = df[df.energy_j.notna()]
    # GPM rows hold only GPM columns; NVML rows never hold GPM columns.
    assert gpm[list(NVML_COLUMNS)].isna().all().all()
    assert nvml[list(GPM_COLUMNS)].isna().all().all()
    assert len(nvml) == len(df) - len(gpm)
    # Windows of 0.5 s (5 reads at 0.1 s), one row each, t = midpoint: the first window is
    # [open, open + 0.5].
    dt = np.diff(gpm.t.to_numpy())
    assert np.allclose(dt, 0.5, atol=1e-3)
    assert gpm.t.iloc[0] == pytest.approx(t0 + 0.25, abs=1e-6)
    span = df.t.max() - t0
    assert abs(len(gpm) - span / 0.5) <= 1.5
    # Each GPM row precedes the NVML row of the same read (time order within the device).
    assert (gpm.index + 1).isin(nvml.index).all()
    assert (df.loc[gpm.index + 1, "t"].to_numpy() > gpm.t.to_numpy()).all()


def test_gpm_values_match_the_recorded_windows(swept, h100_gpm):
    _, df, _ = swept
    raw = pd.read_csv(h100_gpm / "gpm_samples_500ms.csv")
    gpm = df[df.sm_active_pct.notna()]
    inside = gpm[(gpm.t - 0.25 >= raw.t_start.iloc[0]) & (gpm.t + 0.25 <= raw.t_end.iloc[-1])]
    assert len(inside) >= 0.95 * len(gpm)
    for csv_col, col in CSV_COLUMN_MAP.items():
        # NVML (and the capture) give the *_per_sec rates in MiB/s; the schema's columns are MB/s.
        unit = 2**20 / 1e6 if csv_col.endswith("_per_sec") else 1.0
        want = [unit * window_mean(raw, csv_col, t - 0.25, t + 0.25) for t in inside.t]
        np.testing.assert_allclose(inside[col], want, rtol=1e-6, atol=1e-6, err_msg=col)


def test_gpm_phase_means_tell_the_known_bottlenecks_apart(swept, h100_gpm):
    _, df, _ = swept
    ref = read_gpm_csv(h100_gpm / "gpm_samples_500ms.csv")
    phases = {p["phase"]: p for p in json.loads((h100_gpm / "phases.json").read_text())}
    gpm = df[df.sm_active_pct.notna()]
    nvml = df[df.util_pct.notna()]
    means = {}
    for name, p in phases.items():
        a, b = p["t_start"] + 0.5, p["t_end"] - 0.5
        got = gpm[(gpm.t > a) & (gpm.t < b)]
        want = ref[(ref.t > a) & (ref.t < b)]
        assert len(got) >= 2 * (b - a) - 2, name
        for col in ("sm_active_pct", "sm_occupancy_pct", "tensor_active_pct", "dram_active_pct"):
            assert got[col].mean() == pytest.approx(want[col].mean(), abs=2.0), (name, col)
        means[name] = got.mean(numeric_only=True)
        means[name]["util_pct"] = nvml[(nvml.t > a) & (nvml.t < b)].util_pct.mean()
    # The README's table (fixtures/nvidia-h100-gpm): what each phase's bottleneck looks like.
    assert means["matmul"].tensor_active_pct == pytest.approx(91, abs=3)
    assert means["membound"].dram_active_pct == pytest.approx(90, abs=3)
    assert means["membound"].tensor_active_pct < 1
    assert means["launchbound"].sm_active_pct == pytest.approx(2, abs=1.5)
    assert means["launchbound"].util_pct > 25  # NVML calls it busy; GPM says the SMs idle
    assert means["train"].sm_active_pct == pytest.approx(89, abs=3)
    assert means["idle_start"].sm_active_pct < 1


def test_without_a_gpm_trace_the_device_is_not_gpm_capable(h100_gpm):
    trace, _ = paths(h100_gpm)
    clock = ManualClock()
    c = NvmlReplayCollector(clock=clock, trace=trace, start="trace")
    t0 = float(pd.read_csv(trace, nrows=1).t.iloc[0])
    clock.set(t0)
    devices = c.open()
    assert devices["gpu:0"]["gpm"].startswith("unsupported: ")
    assert "gpm_interval_s" not in devices["gpu:0"]
    rows = []
    for k in range(1, 31):
        clock.set(t0 + 0.1 * k)
        rows.extend(c.read())
    assert len(rows) == 30 and not any(col in r for r in rows for col in GPM_COLUMNS)
    assert c.nvml.gpm_samples_live == 0
    c.close()


class OldBindings(ReplayNvml):
    """NVML bindings from before GPM (nvidia-ml-py too old): the GPM names do not exist."""

    def __getattribute__(self, name: str):
        if name.startswith(("nvmlGpm", "NVML_GPM_", "c_nvmlGpm")):
            raise AttributeError(name)
        return super().__getattribute__(name)


class NotSupportedDriver(ReplayNvml):
    """A driver that answers the GPM support query with NVML_ERROR_NOT_SUPPORTED."""

    def nvmlGpmQueryDeviceSupport(self, h):  # noqa: N802
        raise ReplayNVMLError(ERROR_NOT_SUPPORTED, "Not Supported")


@pytest.mark.parametrize("cls, reason", [(OldBindings, "lack nvmlGpmQueryDeviceSupport"),
                                         (NotSupportedDriver, "Not Supported")])
def test_missing_or_unsupported_gpm_falls_back_to_plain_nvml(h100_gpm, cls, reason):
    trace, gpm = paths(h100_gpm)
    clock = ManualClock()
    lib = cls(trace, clock=clock, start="trace", gpm_trace=gpm)
    assert not hasattr(lib, "nvmlGpmSampleGet") or cls is NotSupportedDriver
    c = NvmlCollector(clock=clock, nvml=lib, gpm=True)  # asked for, still never an error
    t0 = lib.trace.t_first
    df = sweep(c, clock, t0, t0 + 3.0)
    status = c.gpm_status["gpu:0"]
    assert status.startswith("unsupported: ") and reason in status
    assert len(df) == 30 and not set(GPM_COLUMNS) & set(df.columns)
    assert df.energy_j.notna().all()
    c.close()


def test_gpm_false_never_touches_gpm(h100_gpm):
    trace, gpm = paths(h100_gpm)
    c = base.create(f"nvml-replay:trace={trace},gpm_trace={gpm},start=trace,gpm=false", clock=ManualClock())
    c.clock.set(c.nvml.trace.t_first)
    assert c.open()["gpu:0"]["gpm"] == "disabled (gpm=false)"
    assert c.nvml.gpm_samples_live == 0
    c.close()


def test_a_gpm_failure_mid_run_keeps_the_nvml_readings(h100_gpm):
    trace, gpm = paths(h100_gpm)

    class Flaky(ReplayNvml):
        fail = False

        def nvmlGpmMetricsGet(self, request):  # noqa: N802
            if self.fail:
                raise ReplayNVMLError(ERROR_NOT_SUPPORTED, "Not Supported")
            return super().nvmlGpmMetricsGet(request)

    clock = ManualClock()
    lib = Flaky(trace, clock=clock, start="trace", gpm_trace=gpm)
    c = NvmlCollector(clock=clock, nvml=lib)
    t0 = lib.trace.t_first
    df1 = sweep(c, clock, t0, t0 + 1.0)
    assert df1.sm_active_pct.notna().sum() == 2
    lib.fail = True
    rows = []
    for k in range(1, 11):
        clock.set(t0 + 1.0 + 0.1 * k)
        rows.extend(c.read())
    assert len(rows) == 10 and all("energy_j" in r for r in rows)
    assert c.gpm_status["gpu:0"].startswith("unsupported: failed during the run")
    assert lib.gpm_samples_live == 0  # freed when GPM stopped
    c.close()


def test_samples_are_freed_on_close_and_a_lost_gpu_frees_its_own(h100_gpm):
    trace, gpm = paths(h100_gpm)
    clock = ManualClock()
    c = NvmlReplayCollector(clock=clock, trace=trace, gpm_trace=gpm, devices=2, start="trace")
    clock.set(c.nvml.trace.t_first)
    devices = c.open()
    assert [d["gpm"] for d in devices.values()] == ["enabled", "enabled"]  # one GPM GPU replayed as two
    assert c.nvml.gpm_samples_live == 4
    clock.advance(0.6)
    rows = c.read()
    assert sum("sm_active_pct" in r for r in rows) == 2
    c.nvml.lost.add(1)
    clock.advance(0.6)
    rows = c.read()  # gpu:1 dropped alone, its GPM samples freed; gpu:0 keeps its NVML and GPM rows
    assert [r["device"] for r in rows] == ["gpu:0", "gpu:0"] and "sm_active_pct" in rows[0]
    assert c.nvml.gpm_samples_live == 2
    c.nvml.lost.add(0)
    clock.advance(0.6)
    with pytest.raises(DeviceLostError, match="lost"):  # every GPU lost: the collector stops
        c.read()
    c.close()
    assert c.nvml.gpm_samples_live == 0
    c.close()  # twice is fine


def test_replay_loops_gpm_with_the_nvml_trace(h100_gpm):
    trace, gpm = paths(h100_gpm)
    raw = pd.read_csv(gpm)
    nvml = pd.read_csv(trace)
    period = nvml.t.iloc[-1] - nvml.t.iloc[0] + (nvml.t.iloc[-1] - nvml.t.iloc[-2])  # as the NVML replay loops
    clock = ManualClock(0.0)
    c = NvmlReplayCollector(clock=clock, trace=trace, gpm_trace=gpm)  # start="open": clock 0 = trace start
    df = sweep(c, clock, 0.0, period + 30.0, step=0.5)
    c.close()
    rows = df[df.sm_active_pct.notna()]
    second = rows[rows.t > period + 1.0]
    assert len(second) >= 50
    t_trace = second.t.to_numpy() + nvml.t.iloc[0] - period  # back into the first loop's trace time
    want = [window_mean(raw, "sm_util", t - 0.25, t + 0.25) for t in t_trace]
    np.testing.assert_allclose(second.sm_active_pct, want, atol=1e-6)
    assert second.sm_active_pct.max() > 80  # the loop reached the busy phases again


def test_spec_options_and_interval(h100_gpm):
    trace, gpm = paths(h100_gpm)
    c = base.create(f"nvml-replay:trace={trace},gpm_trace={gpm},gpm_interval=0.1")
    assert c.gpm_interval == 0.5  # at least 0.5 s
    assert c.options()["gpm_trace"] == gpm and c.options()["gpm"] == "auto"
    assert c.available()[0]
    assert base.create("nvml-replay:gpm_interval=2").gpm_interval == 2.0
    assert not base.create(f"nvml-replay:gpm_trace={gpm}.missing").available()[0]
    with pytest.raises(InputError, match="gpm option"):
        base.create("nvml-replay:gpm=maybe")
    with pytest.raises(InputError, match="gpm_interval"):
        NvmlCollector(gpm_interval=0)
    assert set(GPM_COLUMNS) == set(GPM_COLUMN_MAP.values())
    assert set(GPM_COLUMNS) <= set(NvmlCollector.metrics)


def test_a_recorded_run_keeps_the_gpm_rows(h100_gpm, tmp_path):
    trace, gpm = paths(h100_gpm)
    clock = ManualClock()
    c = NvmlReplayCollector(clock=clock, trace=trace, gpm_trace=gpm, start="trace")
    phases = {p["phase"]: p for p in json.loads((h100_gpm / "phases.json").read_text())}
    t0 = phases["membound"]["t_start"] + 1.0
    clock.set(t0)
    w = RunWriter.create(tmp_path / "r")
    rec = Recorder(w, [c], interval=0.1, clock=clock)
    rec.start(background=False)
    for _ in range(30):
        clock.advance(0.1)
        rec.sample_once()
    rec.stop()
    w.finalize(status="finished")
    s = Run.open(tmp_path / "r").samples
    g = s[s.sm_active_pct.notna()]
    assert len(g) == 6 and g.energy_j.isna().all()
    assert g.dram_active_pct.mean() == pytest.approx(90, abs=3)
    assert s.energy_j.notna().sum() == 30


def test_the_real_pynvml_has_the_gpm_api_the_collector_uses():
    pynvml = pytest.importorskip("pynvml")
    for name in GPM_FUNCTIONS:
        assert hasattr(pynvml, name), name
        assert hasattr(ReplayNvml, name), name
    for name in GPM_COLUMN_MAP:
        assert getattr(pynvml, "NVML_GPM_METRIC_" + name) == GPM_METRIC_IDS[name], name
        assert getattr(ReplayNvml, "NVML_GPM_METRIC_" + name) == GPM_METRIC_IDS[name], name
    assert pynvml.NVML_GPM_METRICS_GET_VERSION == GPM_METRICS_GET_VERSION
    assert pynvml.NVML_ERROR_NOT_SUPPORTED == ERROR_NOT_SUPPORTED
    assert {"version", "isSupportedDevice"} <= {f for f, _ in pynvml.c_nvmlGpmSupport_t._fields_}
    # The struct is filled the way the collector fills it (no GPU needed for that).
    req = pynvml.c_nvmlGpmMetricsGet_t()
    req.version = pynvml.NVML_GPM_METRICS_GET_VERSION
    req.numMetrics = len(GPM_COLUMN_MAP)
    for i, name in enumerate(GPM_COLUMN_MAP):
        req.metrics[i].metricId = getattr(pynvml, "NVML_GPM_METRIC_" + name)
    # The array's length is the installed binding's NVML_GPM_METRIC_MAX (98 in nvidia-ml-py 12.535,
    # 333 and 477 in later ones): never pinned, only large enough for the metrics the collector asks.
    assert len(req.metrics) == pynvml.NVML_GPM_METRIC_MAX >= len(GPM_COLUMN_MAP)
    assert GPM_METRIC_MAX >= len(GPM_COLUMN_MAP)  # the replay's own array
    m = req.metrics[0]
    assert (m.metricId, m.nvmlReturn, m.value) == (GPM_METRIC_IDS["SM_UTIL"], 0, 0.0)
    assert {"sample1", "sample2"} <= {f for f, _ in pynvml.c_nvmlGpmMetricsGet_t._fields_}
