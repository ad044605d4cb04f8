"""Prometheus: a report as a node_exporter textfile, and the live /metrics endpoint of a recording."""

from __future__ import annotations

import json
import math
import os
import time
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import wattprof  # noqa: E402
from wattprof.analysis.carbon import resolve_intensity  # noqa: E402
from wattprof.errors import InputError  # noqa: E402
from wattprof.exporters.prometheus import LiveEnergy, LiveMetricsServer, render_textfile, write_textfile  # noqa: E402
from wattprof.reports.build import build_report  # noqa: E402
from wattprof.run import Run, RunWriter  # noqa: E402

T0 = 1_700_000_000.0


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} of a text exposition."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(got: dict, name: str, **labels: str) -> float:
    matches = [v for (n, ls), v in got.items() if n == name and set(labels.items()) <= set(ls)]
    assert len(matches) == 1, f"{name}{labels}: {len(matches)} samples"
    return matches[0]


@pytest.fixture
def report(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "must-never-appear")
    w = RunWriter.create(tmp_path / "run", name="nightly-8b", clock_time=T0,
                         tags={"model": "llama-8b", "commit": "abc123", "api_key": "must-never-appear-either"})
    w.add_devices({"gpu:0": {"name": "H100", "power_source": "test"}, "gpu:1": {"name": "H100"},
                   "host": {"power_source": "estimated"}})
    s = w.sample_stream("sim", ["power_w", "power_est_w", "util_pct"])
    rows = []
    for i in range(101):  # 100 s at 1 s
        t = T0 + i
        busy = 20 <= i < 80
        rows += [{"t": t, "device": "gpu:0", "power_w": 600.0 if busy else 80.0, "util_pct": 95.0 if busy else 0.0},
                 {"t": t, "device": "gpu:1", "power_w": 500.0 if busy else 70.0, "util_pct": 90.0 if busy else 0.0},
                 {"t": t, "device": "host", "power_est_w": 120.0}]
    s.append(rows)
    with open(tmp_path / "run" / "steps-0-1.jsonl", "w") as f:
        for k in range(6):
            label = "prefill" if k < 2 else "decode"
            f.write(json.dumps({"step": k, "t_start": T0 + 20 + 10 * k, "t_end": T0 + 29 + 10 * k,
                                "tokens": 4000 if label == "prefill" else 500, "label": label}) + "\n")
    w.finalize(status="finished", exit_code=0, ended_at=T0 + 100)
    return build_report(Run.open(tmp_path / "run"), carbon=resolve_intensity(intensity_g_per_kwh=400.0))


def test_textfile_parses_and_carries_the_reports_values(report, tmp_path):
    path = write_textfile(report, tmp_path / "wattprof.prom", tags=("model", "nothere"))
    text = path.read_text()
    got = samples(text)
    run = {"run": "nightly-8b", "model": "llama-8b"}
    assert value(got, "wattprof_run_energy_joules", **run) == pytest.approx(report.energy_j)
    assert report.energy_j == pytest.approx((600 + 500) * 60 + (80 + 70) * 40, rel=1e-9)  # GPUs only
    for d in report.devices:
        assert value(got, "wattprof_energy_joules_total", device=d.device, **run) == pytest.approx(d.energy_j)
        assert value(got, "wattprof_power_watts", device=d.device, **run) == pytest.approx(d.mean_power_w)
    assert value(got, "wattprof_energy_joules_total", device="host", source="estimate") == pytest.approx(120.0 * 100)
    assert value(got, "wattprof_energy_joules_total", device="gpu:0", source="instant_power") > 0
    assert value(got, "wattprof_tokens_total", **run) == 2 * 4000 + 4 * 500
    assert value(got, "wattprof_run_energy_per_token_joules", **run) == pytest.approx(report.j_per_token)
    for label, lr in report.by_label.items():
        assert value(got, "wattprof_energy_per_token_joules", label=label, **run) == pytest.approx(lr.j_per_token)
        assert value(got, "wattprof_label_energy_joules", label=label, **run) == pytest.approx(lr.energy_j)
    assert value(got, "wattprof_co2e_grams", **run) == pytest.approx(report.carbon.g_co2e)
    assert report.carbon.g_co2e == pytest.approx(report.energy_j / 3.6e6 * 400.0)
    assert value(got, "wattprof_run_end_timestamp_seconds", **run) == T0 + 100
    assert value(got, "wattprof_run_info", **run, status="finished") == 1
    # only allow-listed tags, never the environment
    assert "commit" not in text and "abc123" not in text and "must-never-appear" not in text
    assert "nothere" not in text
    # counters are exposed as *_total without *_created samples (no process-start semantics)
    assert "_created" not in text
    # written atomically: nothing else left in the directory, readable like any file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "wattprof.prom"]
    assert os.stat(path).st_mode & 0o444


def test_textfile_gets_the_umask_without_changing_it_for_other_threads(report, tmp_path, monkeypatch):
    old = os.umask(0o027)
    try:
        def no_umask_round_trip(mask):  # a round trip sets umask 0 for every thread meanwhile
            raise AssertionError(f"os.umask({mask:o}) called while writing the textfile")

        monkeypatch.setattr(os, "umask", no_umask_round_trip)
        path = write_textfile(report, tmp_path / "wattprof.prom")
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "wattprof.prom"]


def test_textfile_replaces_the_previous_one_and_checks_labels(report, tmp_path):
    path = tmp_path / "wattprof.prom"
    path.write_text("old content\n")
    write_textfile(report, path, labels={"job_kind": "nightly"})
    assert value(samples(path.read_text()), "wattprof_run_energy_joules", job_kind="nightly") > 0
    with pytest.raises(InputError, match="device"):
        render_textfile(report, labels={"device": "x"})
    with pytest.raises(InputError, match="no such directory"):
        write_textfile(report, tmp_path / "missing" / "x.prom")


def test_live_energy_from_counters_and_from_power():
    e = LiveEnergy()
    e.observe({"gpu:0": {"t": 0.0, "energy_j": 1000.0, "power_w": 100.0}, "host": {"t": 0.0, "power_est_w": 50.0}})
    e.observe({"gpu:0": {"t": 1.0, "energy_j": 1200.0, "power_w": 300.0}, "host": {"t": 1.0, "power_est_w": 70.0}})
    e.observe({"gpu:0": {"t": 1.0, "energy_j": 1200.0, "power_w": 300.0}, "host": {"t": 1.0, "power_est_w": 70.0}})
    e.observe({"gpu:0": {"t": 2.0, "energy_j": 5.0, "power_w": 300.0}, "host": {"t": 3.0, "power_est_w": 70.0}})
    e.observe({"gpu:0": {"t": 3.0, "energy_j": 305.0, "power_w": 300.0}})
    st = e.state()
    assert st["gpu:0"].source == "counter" and st["gpu:0"].energy_j == pytest.approx(200.0 + 0.0 + 300.0)  # reset
    assert st["host"].source == "estimate" and st["host"].energy_j == pytest.approx(60.0 + 140.0)
    assert st["gpu:0"].power_w == 300.0


def test_live_endpoint_answers_during_a_recording(tmp_path):
    tokens = {"n": 0.0}
    with wattprof.profile("live", collectors=["nvml-replay"], sampler="thread", interval=0.05,
                          out=tmp_path / "run") as prof:
        server = LiveMetricsServer.for_stats(prof.recorder.stats, tokens=lambda: tokens["n"],
                                             run={"run": "live", "id": prof.writer.meta["id"]}, poll_interval=0.1)
        port = server.start()
        try:
            assert server.address == ("127.0.0.1", port)
            deadline = time.monotonic() + 20
            got: dict = {}
            while time.monotonic() < deadline:
                with prof.step(tokens=100, label="train"):
                    time.sleep(0.1)
                tokens["n"] += 100
                got = samples(urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
                if any(n == "wattprof_energy_joules_total" and v > 0 for (n, _), v in got.items()):
                    break
            energy = value(got, "wattprof_energy_joules_total", device="gpu:0", source="counter")
            assert energy > 0
            power = value(got, "wattprof_power_watts", device="gpu:0")
            assert 20 < power < 1000 and math.isfinite(power)
            assert value(got, "wattprof_tokens_total") >= 100
            assert value(got, "wattprof_run_info", run="live") == 1
            assert value(got, "wattprof_sample_timestamp_seconds", device="gpu:0") > T0
            # the counter only grows while the run records
            time.sleep(0.3)
            later = samples(urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
            assert value(later, "wattprof_energy_joules_total", device="gpu:0") >= energy
            with pytest.raises(HTTPError) as e:
                urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
            assert e.value.code == 404
        finally:
            server.stop()
            server.stop()  # idempotent
    with pytest.raises(OSError):
        urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_export_prometheus_command_and_live_endpoint_during_record(tmp_path):
    """`wattprof record --metrics-port 0` serves /metrics while the command runs; `export prometheus`
    writes a textfile that parses."""
    import os
    import re
    import subprocess
    import sys
    import time
    from urllib.request import urlopen

    from conftest import wattprof

    run = tmp_path / "run"
    env = dict(os.environ)
    env.pop("WATTPROF_RUN_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "wattprof", "record", "-q", "-c", "nvml-replay", "--metrics-port", "0",
                             "--out", str(run), "--", sys.executable, "-c", "import time; time.sleep(4)"],
                            stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stderr.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
    assert m, line
    time.sleep(1.5)
    body = urlopen(f"http://127.0.0.1:{m.group(1)}/metrics", timeout=10).read().decode()
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    got = samples(body)
    assert value(got, "wattprof_power_watts", device="gpu:0") > 0
    out = tmp_path / "wattprof.prom"
    wattprof("export", "prometheus", str(run), "--textfile", str(out), check=True)
    fams = samples(out.read_text())
    assert value(fams, "wattprof_run_energy_joules", run="python") > 0
