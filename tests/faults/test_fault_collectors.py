"""Collectors that fail, hang or vanish, loaded as real plugins by a real `wattprof record`."""

from __future__ import annotations

import json
import sys
import time

import pytest
from conftest import wattprof, wattprof_in_process
from faultkit import events, kinds, max_gap, meta, plugin_env

from wattprof.run import Run

INTERVAL = 0.05
#: Largest gap of a collector that stays on schedule: a collector held up by another one would
#: show a gap of seconds; scheduling jitter on a loaded 2-core machine reaches ~0.25 s.
ON_SCHEDULE_S = 10 * INTERVAL


def _record(tmp_path, *collectors: str, seconds: float = 3.0, timeout: float = 120):
    run = tmp_path / "run"
    args = ["record", "--out", str(run), "-q", "--interval", str(INTERVAL)]
    for c in collectors:
        args += ["-c", c]
    t0 = time.time()
    p = wattprof(*args, "--", sys.executable, "-c", f"import time; time.sleep({seconds})",
                 env=plugin_env(tmp_path), timeout=timeout)
    return run, p, time.time() - t0


def _device_times(run, device):
    s = Run.open(run).samples
    return s.loc[s["device"] == device, "t"].to_numpy()


@pytest.mark.slow  # seconds of real time are the point (a real record, killed or hanging)
def test_a_collector_failing_every_nth_read_loses_only_those_reads(tmp_path):
    """Guarantee: a collector raising on every Nth read loses exactly those reads; the failures
    are recorded as rate-limited `collector_error` events and the other collectors are
    unaffected (no gaps)."""
    run, p, _ = _record(tmp_path, "fault-every-nth:n=4", "nvml-replay")
    assert p.returncode == 0, p.stderr
    flaky = _device_times(run, "gpu:7")
    gpu = _device_times(run, "gpu:0")
    ticks = len(gpu)
    assert ticks >= 40
    assert abs(len(flaky) - ticks * 3 / 4) <= 3, (len(flaky), ticks)
    errors = [e for e in events(run) if e["kind"] == "collector_error"]
    assert 3 <= len(errors) <= 3 + ticks // 100 + 1
    assert all("injected failure" in e["message"] for e in errors)
    assert max_gap(gpu) < ON_SCHEDULE_S
    assert meta(run)["status"] == "finished"


@pytest.mark.slow  # seconds of real time are the point (a real record, killed or hanging)
def test_a_hanging_collector_is_timed_out_and_the_others_stay_on_schedule(tmp_path):
    """Guarantee: a read that hangs holds up only its own collector. The other collectors keep
    their schedule (no gap in their samples); the stuck read is recorded (`collector_timeout`),
    the collector misses its ticks until the read returns (`collector_recovered`), then samples
    again."""
    run, p, _ = _record(tmp_path, "fault-hang:after=10,seconds=2.5", "nvml-replay", seconds=5.0)
    assert p.returncode == 0, p.stderr
    gpu = _device_times(run, "gpu:0")
    hung = _device_times(run, "gpu:6")
    assert max_gap(gpu) < ON_SCHEDULE_S, "the replayed GPU must stay on schedule during the hang"
    assert 2.3 < max_gap(hung) < 3.5  # the hang, then sampling again
    assert hung.max() > gpu.max() - 1.0  # it came back
    k = kinds(run)
    assert "collector_timeout" in k and "collector_recovered" in k
    assert meta(run)["status"] == "finished"


@pytest.mark.slow  # seconds of real time are the point (a real record, killed or hanging)
def test_a_collector_hanging_for_ever_does_not_stop_the_run_from_finishing(tmp_path):
    """Guarantee: a read that never returns does not keep `wattprof record` from finishing: the
    run is finalised about `read_timeout` (1 s) after the command ends, with the other
    collectors' samples, and the command's exit status is kept."""
    run, p, took = _record(tmp_path, "fault-hang:after=5,seconds=0", "nvml-replay", seconds=2.0)
    assert p.returncode == 0, p.stderr
    assert took < 15
    assert meta(run)["status"] == "finished"
    assert max_gap(_device_times(run, "gpu:0")) < ON_SCHEDULE_S
    msgs = [e["message"] for e in events(run)]
    assert any("still running when the run stopped" in m for m in msgs)
    assert "collector_timeout" in kinds(run)


@pytest.mark.slow  # seconds of real time are the point (a real record, killed or hanging)
def test_a_gpu_that_falls_off_the_bus_stops_its_collector_and_the_run_goes_on(tmp_path):
    """Guarantee: NVML's GPU-is-lost error (NVML_ERROR_GPU_IS_LOST) stops that collector with a
    `device_lost` event; the run, the other collectors and the command go on, and the report
    still works (with the GPU's energy up to the loss)."""
    run, p, _ = _record(tmp_path, "fault-vanish:after=20,devices=2", "host", seconds=3.0)
    assert p.returncode == 0, p.stderr
    s = Run.open(run).samples
    lost_at = s.loc[s["device"] == "gpu:0", "t"].max()
    assert 19 <= (s["device"] == "gpu:0").sum() <= 20  # 19 reads before the loss (the 20th lost it)
    assert s.loc[s["device"] == "host", "t"].max() > lost_at + 1.5  # the host collector went on
    lost = [e for e in events(run) if e["kind"] == "device_lost"]
    assert len(lost) == 1 and "GPU is lost" in lost[0]["message"]
    assert meta(run)["status"] == "finished"
    rep = json.loads(wattprof_in_process("report", str(run), "-f", "json", check=True).stdout)
    assert {d["device"] for d in rep["devices"]} >= {"gpu:0", "gpu:1", "host"}
    assert rep["energy_j"] > 0


@pytest.mark.slow  # seconds of real time are the point (a real record, killed or hanging)
def test_a_plugin_whose_open_or_close_raises_any_exception_never_breaks_record(tmp_path):
    """Guarantee (issue 12, item 9): a collector whose open() or close() raises an exception that
    is not a wattprof error (any third-party plugin) is recorded as a `collector_error` event;
    the run is finalised, the other collectors sample, and `record` exits with the child's status."""
    for on in ("open", "close"):
        work = tmp_path / on
        work.mkdir()
        run = work / "run"
        p = wattprof("record", "--out", str(run), "-q", "--interval", str(INTERVAL), "-c", f"fault-plugin:on={on}",
                     "-c", "nvml-replay", "--", sys.executable, "-c", "import time, sys; time.sleep(1); sys.exit(3)",
                     env=plugin_env(work))
        assert p.returncode == 3, p.stderr
        assert "Traceback" not in p.stderr
        m = meta(run)
        assert m["status"] == "failed" and m["exit_code"] == 3
        errs = [e["message"] for e in events(run) if e["kind"] == "collector_error"]
        assert any(f"{on}" in e and "KeyError" in e for e in errs), errs
        assert len(_device_times(run, "gpu:0")) > 5
        if on == "close":  # it sampled before its close failed
            assert len(_device_times(run, "gpu:5")) > 5
