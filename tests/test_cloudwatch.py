"""CloudWatch: the collector reads the agent's nvidia_smi_* metrics back into a run, and the exporter
puts a report's results into CloudWatch. Everything runs against moto's server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

import numpy as np
import pytest

pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from cloudwatch_fake import StrictCloudWatch  # noqa: E402

import wattprof  # noqa: E402
from wattprof.analysis.carbon import resolve_intensity  # noqa: E402
from wattprof.clock import ManualClock  # noqa: E402
from wattprof.collectors import base  # noqa: E402
from wattprof.collectors.cloudwatch import CloudWatchCollector, choose_period  # noqa: E402
from wattprof.errors import CollectorError, InputError, WattprofError  # noqa: E402
from wattprof.exporters.cloudwatch import MAX_DATA_PER_CALL, build_metric_data, export_cloudwatch  # noqa: E402
from wattprof.recording.recorder import Recorder  # noqa: E402
from wattprof.reports.build import build_report  # noqa: E402
from wattprof.reports.model import LabelReport  # noqa: E402
from wattprof.run import Run, RunWriter  # noqa: E402

REGION = "us-east-1"
INSTANCE = "i-0abc1234def567890"
HOST = "ip-10-0-1-23.ec2.internal"
GPU_NAME = "NVIDIA H100 80GB HBM3"
STEP_S = 10  # the agent's metrics_collection_interval: 10 s is high resolution


@pytest.fixture(scope="module")
def moto_server_url():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def strict_cw(moto_server_url):
    """The strict fake of the CloudWatch rules moto lacks, in front of moto (tests/cloudwatch_fake.py)."""
    fake = StrictCloudWatch(moto_server_url)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def moto_url(strict_cw):
    """Where the tests' CloudWatch lives: the strict fake, forwarding to moto."""
    return strict_cw.url


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path, moto_server_url, strict_cw):
    """Dummy credentials, a region, no shared config, no instance metadata lookups, and every AWS
    endpoint pointed at the strict fake in front of the local moto server; both reset for each test."""
    for k in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
              "AWS_EC2_METADATA_SERVICE_ENDPOINT", "KUBERNETES_SERVICE_HOST", "NODE_NAME", "POD_NAME",
              "POD_NAMESPACE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", strict_cw.url)
    urlopen(Request(moto_server_url + "/moto-api/reset", method="POST"), timeout=10).read()
    strict_cw.reset()
    strict_cw.clock, strict_cw.list_delay_s = time.time, 0.0
    yield
    assert not strict_cw.rejected or getattr(strict_cw, "expect_rejections", False), strict_cw.rejected
    strict_cw.expect_rejections = False


def _only_localhost(request, **_):
    host = urlsplit(request.url).hostname
    assert host == "127.0.0.1", f"a test tried to reach {request.url}"


def make_factory(moto_url, *, throttle: dict[str, int] | None = None, calls: list | None = None,
                 code: str = "Throttling"):
    """A client factory like boto3.client, for moto: no request gzip (moto's server mode fails on
    it), every request checked to go to 127.0.0.1, and optionally the first N calls of an operation
    answered the way AWS answers when it throttles (a ClientError with code Throttling; or `code`)."""
    left = dict(throttle or {})

    def factory(service, **kwargs):
        cfg = Config(disable_request_compression=True)
        kwargs["config"] = kwargs["config"].merge(cfg) if kwargs.get("config") else cfg
        kwargs["endpoint_url"] = moto_url
        kwargs.setdefault("region_name", REGION)
        client = boto3.client(service, **kwargs)
        client.meta.events.register("before-send.cloudwatch", _only_localhost)

        def record(params, model, **_):
            if calls is not None:
                calls.append((model.name, dict(params)))

        def before_call(model, params, **_):
            if left.get(model.name, 0) > 0:
                left[model.name] -= 1
                error = {"Error": {"Code": code, "Message": "Rate exceeded" if code == "Throttling" else "denied"},
                         "ResponseMetadata": {"HTTPStatusCode": 400}}
                return type("Http", (), {"status_code": 400, "headers": {}})(), error
            return None

        client.meta.events.register("before-parameter-build.cloudwatch", record)
        client.meta.events.register("before-call.cloudwatch", before_call)
        return client

    return factory


def power_fn(gpu: int, t: np.ndarray, t0: float) -> np.ndarray:
    """A realistic shape: idle 2 min, a ramp to a busy plateau with ripple, back to idle."""
    x = np.asarray(t, dtype=float) - t0
    busy = np.clip((x - 120) / 30, 0, 1) * np.clip((540 - x) / 30, 0, 1)
    idle, peak = (70.0, 650.0) if gpu == 0 else (65.0, 540.0)
    return idle + (peak - idle) * busy + 15.0 * busy * np.sin(x / 17.0)


AGENT_DIMS = {
    # append_dimensions {"InstanceId": "${aws:InstanceId}", ...}: the agent drops `host`
    "appended": lambda gpu, instance, host: {"index": str(gpu), "name": GPU_NAME, "arch": "x86_64",
                                             "InstanceId": instance, "InstanceType": "p5.48xlarge"},
    # no append_dimensions: `host` names the machine
    "host": lambda gpu, instance, host: {"index": str(gpu), "name": GPU_NAME, "arch": "x86_64", "host": host},
    # the agent in a container without append_dimensions: no `host` (omit_hostname), no InstanceId
    "container": lambda gpu, instance, host: {"index": str(gpu), "name": GPU_NAME, "arch": "x86_64"},
}


def put_agent_metrics(client, t_first: float, *, minutes: int = 10, step: int = STEP_S, instance: str = INSTANCE,
                      host: str = HOST, rollup: bool = True, style: str = "appended", t_until: float | None = None,
                      t_from: float | None = None) -> None:
    """What the CloudWatch agent publishes for 2 GPUs: nvidia_smi_power_draw and utilization_gpu
    (plus memory_used) per index, with the dimension set of the agent configuration `style`, and a
    roll-up without `index` (aggregation_dimensions). Sub-minute intervals are high resolution.
    ``t_from``/``t_until``: publish only the readings in that span (late data, new metrics)."""
    times = np.arange(t_first, t_first + minutes * 60 + 1, step, dtype=float)
    times = times[(times >= (t_from if t_from is not None else -np.inf))
                  & (times <= (t_until if t_until is not None else np.inf))]
    resolution = 1 if step < 60 else 60
    data = []
    for gpu in (0, 1):
        dims = [{"Name": k, "Value": v} for k, v in AGENT_DIMS[style](gpu, instance, host).items()]
        p = power_fn(gpu, times, t_first)
        for t, w in zip(times, p, strict=True):
            when = datetime.fromtimestamp(t, tz=UTC)
            for name, value in (("nvidia_smi_power_draw", w), ("nvidia_smi_utilization_gpu", min(100.0, w / 6.5)),
                                ("nvidia_smi_memory_used", 40000.0)):
                data.append({"MetricName": name, "Dimensions": dims, "Timestamp": when, "Value": round(float(value), 3),
                             "StorageResolution": resolution})
    if rollup:
        ident = {k: v for k, v in AGENT_DIMS[style](0, instance, host).items() if k in ("InstanceId", "host")}
        for t in times:
            total = float(power_fn(0, np.array([t]), t_first)[0] + power_fn(1, np.array([t]), t_first)[0])
            data.append({"MetricName": "nvidia_smi_power_draw",
                         "Dimensions": [{"Name": k, "Value": v} for k, v in ident.items()],
                         "Timestamp": datetime.fromtimestamp(t, tz=UTC), "Value": total,
                         "StorageResolution": resolution})
    for i in range(0, len(data), 500):
        client.put_metric_data(Namespace="CWAgent", MetricData=data[i:i + 500])


def expected_energy(gpu: int, t_first: float, t0: float, t1: float, *, step: int = STEP_S, minutes: int = 10,
                    bucket: float = float(STEP_S)) -> float:
    """Hand-computed: readings (rounded as published) placed at the middle of their bucket (read at
    the period the readings come at: 10 s),
    linear in between, integrated over [t0, t1]."""
    times = np.arange(t_first, t_first + minutes * 60 + 1, step, dtype=float)
    values = np.round(power_fn(gpu, times, t_first), 3)
    tp = times + bucket / 2
    inner = tp[(tp > t0) & (tp < t1)]
    grid = np.concatenate([[t0], inner, [t1]])
    return float(np.trapezoid(np.interp(grid, tp, values), grid))


class HeldClock(ManualClock):
    """Time stands still until the test moves it; sleeping waits a little real time (so the
    recorder's thread neither races the clock ahead nor spins)."""

    def sleep(self, seconds: float) -> None:
        time.sleep(min(max(seconds, 0.0), 0.005))


def recent_minute() -> float:
    return float(int(time.time()) // 60 * 60 - 1800)  # half an hour ago: 1 s data is still kept


# ---- the collector -----------------------------------------------------------------------------------------

def test_a_profiled_run_reads_agent_metrics_back_and_its_energy_is_the_integral(moto_url, tmp_path):
    t_first = recent_minute()
    put_agent_metrics(make_factory(moto_url)("cloudwatch"), t_first)
    t0, t1 = t_first + 5.0, t_first + 595.0
    clock = HeldClock(t0)
    spec = f"cloudwatch:endpoint_url={moto_url},instance_id={INSTANCE},region={REGION},agent_version=1.300056.0"
    with wattprof.profile("cw-run", collectors=[spec], sampler="thread", clock=clock, out=tmp_path / "run",
                          tags={"model": "8b"}) as prof:
        assert urlsplit(prof.recorder.collectors[0].client.meta.endpoint_url).hostname == "127.0.0.1"
        prof.mark(label="train", tokens=120_000, t_start=t_first + 150, t_end=t_first + 510)
        clock.set(t1)
    run = Run.open(tmp_path / "run")
    report = build_report(run, carbon=resolve_intensity(intensity_g_per_kwh=400.0))

    devs = {d.device: d for d in report.devices}
    assert set(devs) == {f"cw:{INSTANCE}/gpu:0", f"cw:{INSTANCE}/gpu:1"}  # the roll-up is not a device
    e0 = expected_energy(0, t_first, t0, t1)
    e1 = expected_energy(1, t_first, t0, t1)
    assert devs[f"cw:{INSTANCE}/gpu:0"].energy_j == pytest.approx(e0, rel=1e-9)
    assert devs[f"cw:{INSTANCE}/gpu:1"].energy_j == pytest.approx(e1, rel=1e-9)
    assert report.energy_j == pytest.approx(e0 + e1, rel=1e-9)
    # ... and within 0.5 % of the true energy of the signal the readings sampled
    fine = np.linspace(t0, t1, 200_001)
    truth = sum(float(np.trapezoid(power_fn(g, fine, t_first), fine)) for g in (0, 1))
    assert report.energy_j == pytest.approx(truth, rel=5e-3)
    d0 = devs[f"cw:{INSTANCE}/gpu:0"]
    # agent 1.300056.0 and newer publish the instantaneous reading: labelled as such
    assert d0.energy_source == "instant_power" and d0.name == GPU_NAME
    assert d0.power_source == ("measured: CloudWatch agent nvidia_smi_power_draw (period 10 s, statistic Average, "
                               "instantaneous readings (agent 1.300056.0))")
    assert run.samples["mem_used_bytes"].dropna().iloc[0] == 40000.0 * 1024 * 1024
    assert report.by_label["train"].j_per_token == pytest.approx(report.by_label["train"].energy_j / 120_000)
    assert report.run["tags"] == {"model": "8b"}


def test_fetch_picks_the_period_and_says_it_in_the_power_source(moto_url):
    t_first = recent_minute()
    factory = make_factory(moto_url)
    put_agent_metrics(factory("cloudwatch"), t_first, minutes=3, style="host")
    clock = ManualClock(t_first + 200)
    c = CloudWatchCollector(clock=clock, host=HOST, client_factory=factory, power="average")
    devices = c.open()
    assert set(devices) == {f"cw:{HOST}/gpu:0", f"cw:{HOST}/gpu:1"}
    assert devices[f"cw:{HOST}/gpu:0"]["dimensions"]["index"] == "0"
    rows = c.fetch(t_first, t_first + 180)
    assert c.last_period == 10  # the readings' interval (10 s), not 1 s: ten times fewer points
    assert rows[0]["t"] == t_first and rows[-1]["t"] == t_first + 180  # edges of the window
    info = c.devices_after_fetch[f"cw:{HOST}/gpu:0"]
    assert info["power_source"] == ("measured: CloudWatch agent nvidia_smi_power_draw (period 10 s, statistic "
                                    "Average, 1 s averaged readings (power=average))")
    # the run outlasts the data (the agent never sent it): it waits (bounded), then notes the gap
    rows = c.fetch(t_first, t_first + 300)
    assert rows[-1]["t"] < t_first + 200
    assert c.waited_s == pytest.approx(300 + 120 - 200)  # up to wait_s after the run's end, on its clock
    assert any("no data for the last" in n and "wait_s" in n for n in c.notes)
    assert c.devices_after_fetch[f"cw:{HOST}/gpu:0"]["notes"]
    # retention: 1 s data is kept 3 h, 60 s data 15 days
    assert choose_period(t_first, t_first + 3600) == 1
    assert choose_period(t_first, t_first + 4 * 3600) == 60
    assert choose_period(t_first, t_first + 20 * 86400) == 300
    with pytest.raises(CollectorError, match="keeps only 60 s"):
        choose_period(t_first, t_first + 4 * 3600, 10)
    with pytest.raises(InputError, match="multiple of 60"):
        choose_period(t_first, t_first + 60, 90)
    assert choose_period(t_first, t_first + 60, 20) == 20  # a valid sub-minute period
    assert choose_period(t_first, t_first + 60, interval_s=10) == 10
    assert choose_period(t_first, t_first + 60, interval_s=60, high_resolution=False) == 60
    with pytest.raises(InputError, match="standard resolution"):
        choose_period(t_first, t_first + 60, 10, high_resolution=False)


def test_standard_resolution_data_is_treated_as_minute_buckets(moto_url):
    """The agent's default 60 s interval publishes standard-resolution data (stored per minute)."""
    t_first = recent_minute()
    factory = make_factory(moto_url)
    put_agent_metrics(factory("cloudwatch"), t_first, step=60, rollup=False)
    c = CloudWatchCollector(clock=ManualClock(t_first + 700), instance_id=INSTANCE, client_factory=factory)
    c.open()
    rows = [r for r in c.fetch(t_first, t_first + 600) if r["device"].endswith("gpu:0")]
    inner = [r["t"] - t_first for r in rows[1:-1]]
    assert inner[:3] == [30.0, 90.0, 150.0]  # the middle of each minute
    assert "period 60 s" in c.devices_after_fetch[f"cw:{INSTANCE}/gpu:0"]["power_source"]
    got = np.trapezoid([r["power_w"] for r in rows], [r["t"] for r in rows])
    assert got == pytest.approx(expected_energy(0, t_first, t_first, t_first + 600, step=60, bucket=60.0), rel=1e-9)


def test_throttling_is_retried_with_backoff(moto_url):
    t_first = recent_minute()
    put_agent_metrics(make_factory(moto_url)("cloudwatch"), t_first, minutes=3)
    calls: list = []
    delays: list[float] = []
    factory = make_factory(moto_url, throttle={"ListMetrics": 1, "GetMetricData": 2}, calls=calls)
    c = CloudWatchCollector(clock=ManualClock(t_first + 200), instance_id=INSTANCE, client_factory=factory,
                            backoff_s=0.05, sleep=delays.append)
    c.open()
    rows = c.fetch(t_first, t_first + 180)
    assert rows and c.retry.retries == 3
    assert [n for n, _ in calls].count("GetMetricData") == 4  # the probe: two throttled, then through; the data
    assert len(delays) == 3 and 0.025 <= delays[1] <= 0.05 <= delays[2] <= 0.1  # backoff doubles (with jitter)

    # bounded: more throttling than retries is a clear error, not a hang
    factory = make_factory(moto_url, throttle={"GetMetricData": 10})
    c = CloudWatchCollector(clock=ManualClock(t_first + 200), instance_id=INSTANCE, client_factory=factory,
                            max_retries=2, sleep=lambda s: None)
    c.open()
    with pytest.raises(CollectorError, match="Throttling.*retries exhausted"):
        c.fetch(t_first, t_first + 180)


def test_partial_data_is_queried_again_from_where_it_stopped(moto_url):
    t_first = recent_minute()
    factory = make_factory(moto_url)
    put_agent_metrics(factory("cloudwatch"), t_first, minutes=3, rollup=False)
    complete = CloudWatchCollector(clock=ManualClock(t_first + 200), instance_id=INSTANCE, client_factory=factory)
    complete.open()
    expected = complete.fetch(t_first, t_first + 180)

    def partial_factory(service, **kwargs):
        client = factory(service, **kwargs)
        state = {"first": True}

        def truncate(parsed, model, **_):  # what CloudWatch does when a result does not fit
            if model.name == "GetMetricData" and state["first"]:
                state["first"] = False
                for r in parsed["MetricDataResults"]:
                    r["Timestamps"], r["Values"] = r["Timestamps"][:5], r["Values"][:5]
                    r["StatusCode"] = "PartialData"

        client.meta.events.register("after-call.cloudwatch", truncate)
        return client

    c = CloudWatchCollector(clock=ManualClock(t_first + 200), instance_id=INSTANCE, client_factory=partial_factory)
    c.open()
    assert c.fetch(t_first, t_first + 180) == expected


def test_missing_metrics_are_a_clear_error_and_an_event_not_a_crash(moto_url, tmp_path):
    t_first = recent_minute()
    factory = make_factory(moto_url)
    put_agent_metrics(factory("cloudwatch"), t_first, minutes=2)
    c = CloudWatchCollector(clock=ManualClock(t_first), instance_id="i-0000000000nothere", client_factory=factory)
    assert c.open() == {}  # not listed (yet): looked for again when the run ends
    with pytest.raises(CollectorError, match=r"no CloudWatch agent metrics .* InstanceId=i-0000000000nothere.*"
                                             r"also at the run's end, after waiting 180 s"):
        c.fetch(t_first, t_first + 60)

    # through the recorder: the run records the reason as an event and still finalises
    clock = ManualClock(t_first)
    w = RunWriter.create(tmp_path / "run", name="missing", clock_time=clock.time())
    rec = Recorder(w, [c], clock=clock)
    rec.start(background=False)
    clock.set(t_first + 60)
    rec.stop()
    w.finalize(status="finished", ended_at=clock.time())
    events = Run.open(tmp_path / "run").events
    assert any("no CloudWatch agent metrics" in m for m in events["message"])

    # series that exist but have no data in the window: a fetch error, recorded as an event
    c = CloudWatchCollector(clock=ManualClock(t_first + 7200), instance_id=INSTANCE, client_factory=factory)
    c.open()
    with pytest.raises(CollectorError, match="no datapoints"):
        c.fetch(t_first + 3600, t_first + 3700)


def test_a_recorded_run_keeps_the_fetchs_periods_and_notes_and_never_a_promise_of_one(moto_url, tmp_path):
    t_first = recent_minute()
    factory = make_factory(moto_url)
    put_agent_metrics(factory("cloudwatch"), t_first, minutes=3)

    def run_with(name: str, t0: float, t1: float) -> Run:
        clock = ManualClock(t0)
        w = RunWriter.create(tmp_path / name, name=name, clock_time=t0)
        c = CloudWatchCollector(clock=clock, instance_id=INSTANCE, client_factory=factory, wait_s=0)
        rec = Recorder(w, [c], clock=clock)
        rec.start(background=False)
        assert "period chosen when the run stops" in w.meta["devices"][f"cw:{INSTANCE}/gpu:0"]["power_source"]
        clock.set(t1)
        rec.stop()
        w.finalize(status="finished", ended_at=t1)
        return Run.open(tmp_path / name)

    # the data ends 60 s before the run does: the period used is in the meta, the gap is an event of its device
    run = run_with("late", t_first + 10, t_first + 240)
    src = run.devices[f"cw:{INSTANCE}/gpu:0"]["power_source"]
    assert src.startswith("measured:") and "period 10 s" in src
    notes = run.events[run.events.kind == "collector_note"]
    gap = notes[notes.message.str.contains("no data for the last")]
    assert set(gap.device) == {f"cw:{INSTANCE}/gpu:0", f"cw:{INSTANCE}/gpu:1"}
    notes = {d.device: d.notes for d in build_report(run, bottlenecks=False).devices}
    assert any(n.startswith("nvidia_smi_power_draw: no data for the last") for n in notes[f"cw:{INSTANCE}/gpu:0"])
    # a window CloudWatch has no data for: the fetch fails, and the meta no longer promises a period
    run = run_with("empty", t_first + 3600, t_first + 3700)
    for dev in (f"cw:{INSTANCE}/gpu:0", f"cw:{INSTANCE}/gpu:1"):
        src = run.devices[dev]["power_source"]
        assert "period chosen when the run stops" not in src and src.startswith("none: nothing was read back")
    assert run.events.message.str.contains("no datapoints").any()


def test_several_machines_need_a_choice(moto_url):
    t_first = recent_minute()
    factory = make_factory(moto_url)
    put_agent_metrics(factory("cloudwatch"), t_first, minutes=2)
    # a second machine whose agent appends no EC2 dimensions: named by `host`
    put_agent_metrics(factory("cloudwatch"), t_first, minutes=2, host="ip-10-0-9-9", style="host")
    with pytest.raises(CollectorError, match="2 machines"):
        CloudWatchCollector(clock=ManualClock(t_first), client_factory=factory).open()
    devs = CloudWatchCollector(clock=ManualClock(t_first), client_factory=factory, all_hosts=1).open()
    assert len(devs) == 4
    assert set(CloudWatchCollector(clock=ManualClock(t_first), client_factory=factory, host="ip-10-0-9-9").open()) == {
        "cw:ip-10-0-9-9/gpu:0", "cw:ip-10-0-9-9/gpu:1"}
    assert set(CloudWatchCollector(clock=ManualClock(t_first), client_factory=factory, instance_id=INSTANCE).open()) == {
        f"cw:{INSTANCE}/gpu:0", f"cw:{INSTANCE}/gpu:1"}


def test_explicit_dimensions_skip_listmetrics(moto_url):
    t_first = recent_minute()
    calls: list = []
    factory = make_factory(moto_url, calls=calls)
    put_agent_metrics(factory("cloudwatch"), t_first, minutes=2, rollup=False)
    # a series' complete dimensions (moto matches them only in the order they were put: a moto gap)
    dims = f"name={GPU_NAME};arch=x86_64;InstanceId={INSTANCE};InstanceType=p5.48xlarge"
    c = base.create(f"cloudwatch:discover=0,indices=0;1,dimensions={dims}", clock=ManualClock(t_first + 130))
    c.client_factory = factory
    assert set(c.open()) == {f"cw:{INSTANCE}/gpu:0", f"cw:{INSTANCE}/gpu:1"}
    rows = c.fetch(t_first, t_first + 120)
    assert {r["device"] for r in rows if r.get("power_w")} == {f"cw:{INSTANCE}/gpu:0", f"cw:{INSTANCE}/gpu:1"}
    assert "ListMetrics" not in {n for n, _ in calls}
    # host and InstanceId together name no series the agent publishes: said before any call
    both = CloudWatchCollector(discover=0, indices="0", host=HOST, instance_id=INSTANCE, client_factory=factory)
    with pytest.raises(InputError, match="never both"):
        both.open()


def test_container_insights_gpu_and_neuron_series(moto_url):
    """EKS Container Insights: node_gpu_* per GpuDevice (roll-ups per node and cluster skipped) and
    node_neuroncore_utilization per NeuronCore (no power: utilisation only)."""
    t_first = recent_minute()
    factory = make_factory(moto_url)
    client = factory("cloudwatch")
    node = {"ClusterName": "train", "NodeName": "ip-10-0-3-4.ec2.internal", "InstanceId": "i-0eks"}
    data = []
    for k in range(7):  # Container Insights publishes per minute
        when = datetime.fromtimestamp(t_first + 60 * k, tz=UTC)
        for gpu in (0, 1):
            dims = {**node, "InstanceType": "p5.48xlarge", "GpuDevice": f"nvidia{gpu}"}
            data.append({"MetricName": "node_gpu_power_draw", "Timestamp": when, "Value": 300.0 + 100 * gpu,
                         "Dimensions": [{"Name": a, "Value": b} for a, b in dims.items()]})
        for dims in ({"ClusterName": "train"}, node):  # roll-ups
            data.append({"MetricName": "node_gpu_power_draw", "Timestamp": when, "Value": 700.0,
                         "Dimensions": [{"Name": a, "Value": b} for a, b in dims.items()]})
        for core in range(4):
            dims = {"ClusterName": "train", "InstanceType": "trn1.32xlarge", "InstanceId": "i-0trn",
                    "NodeName": "ip-10-0-5-6", "NeuronDevice": str(core // 2), "NeuronCore": str(core)}
            data.append({"MetricName": "node_neuroncore_utilization", "Timestamp": when, "Value": 50.0 + core,
                         "Dimensions": [{"Name": a, "Value": b} for a, b in dims.items()]})
    client.put_metric_data(Namespace="ContainerInsights", MetricData=data)

    gpu = CloudWatchCollector(clock=ManualClock(t_first + 400), source="container-insights", cluster="train",
                              client_factory=factory)
    devs = gpu.open()
    assert set(devs) == {"cw:i-0eks/gpu:0", "cw:i-0eks/gpu:1"}
    rows = gpu.fetch(t_first, t_first + 360)
    e = {d: np.trapezoid([r["power_avg_w"] for r in rows if r["device"] == d],
                         [r["t"] for r in rows if r["device"] == d]) for d in devs}
    assert e == {"cw:i-0eks/gpu:0": pytest.approx(300.0 * 360), "cw:i-0eks/gpu:1": pytest.approx(400.0 * 360)}
    assert "Container Insights node_gpu_power_draw (period 60 s" in gpu.devices_after_fetch["cw:i-0eks/gpu:0"][
        "power_source"]

    neuron = CloudWatchCollector(clock=ManualClock(t_first + 400), source="neuron", instance_id="i-0trn",
                                 client_factory=factory)
    devs = neuron.open()
    assert set(devs) == {f"cw:i-0trn/neuron:{c}" for c in range(4)}
    assert devs["cw:i-0trn/neuron:0"]["power_source"].startswith("none:")
    rows = neuron.fetch(t_first, t_first + 360)
    assert {r["util_pct"] for r in rows if r["device"] == "cw:i-0trn/neuron:3"} == {53.0}


def test_available_says_what_is_missing(monkeypatch):
    ok, why = CloudWatchCollector(region=REGION).available()
    assert ok and "credentials from env" in why and "testing" not in why
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    ok, why = CloudWatchCollector().available()
    assert not ok and "no AWS region" in why
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k)
    ok, why = CloudWatchCollector(region=REGION).available()
    assert not ok and "no AWS credentials" in why
    assert "cloudwatch" in base.names()
    opts = CloudWatchCollector(endpoint_url="http://user:pw@127.0.0.1:1", region=REGION).options()
    assert opts["endpoint_url"] == "http://127.0.0.1:1"  # never a credential in the run's metadata


# ---- the exporter ------------------------------------------------------------------------------------------

def _report(moto_url, tmp_path, *, labels: int = 1):
    t_first = recent_minute()
    factory = make_factory(moto_url)
    put_agent_metrics(factory("cloudwatch"), t_first, minutes=3, rollup=False)
    clock = ManualClock(t_first)
    w = RunWriter.create(tmp_path / "run", name="nightly-8b", tags={"model": "8b", "commit": "abc123",
                                                                   "owner": "someone@example.com"},
                         clock_time=clock.time())
    rec = Recorder(w, [CloudWatchCollector(clock=clock, instance_id=INSTANCE, client_factory=factory)], clock=clock)
    rec.start(background=False)
    (tmp_path / "run" / "steps-0-1.jsonl").write_text(
        "".join(f'{{"step": {i}, "t_start": {t_first + 10 + i}, "t_end": {t_first + 11 + i}, "tokens": 1000, '
                f'"label": "l{i % labels}"}}\n' for i in range(150)))
    clock.set(t_first + 180)
    rec.stop()
    w.finalize(status="finished", ended_at=clock.time())
    return build_report(Run.open(tmp_path / "run"), carbon=resolve_intensity(intensity_g_per_kwh=400.0)), factory


def _read_back(client, name: str, dims: dict[str, str], ts: float) -> list[float]:
    q = [{"Id": "m", "MetricStat": {"Metric": {"Namespace": "WattProf", "MetricName": name,
                                               "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]},
                                    "Period": 60, "Stat": "Average"}}]
    r = client.get_metric_data(MetricDataQueries=q, StartTime=datetime.fromtimestamp(ts - 30, tz=UTC),
                               EndTime=datetime.fromtimestamp(ts + 30, tz=UTC))
    return r["MetricDataResults"][0]["Values"]


def test_export_round_trips_through_getmetricdata(moto_url, tmp_path):
    report, factory = _report(moto_url, tmp_path)
    calls: list = []
    client = make_factory(moto_url, throttle={"PutMetricData": 1}, calls=calls)("cloudwatch")
    summary = export_cloudwatch(report, client=client, tags=("model", "missing"), dimensions={"Env": "ci"},
                                sleep=lambda s: None)
    base_dims = {"Name": "nightly-8b", "model": "8b", "Env": "ci"}
    assert summary.dimensions == base_dims and summary.calls == 1 and summary.retries == 1
    assert summary.timestamp == report.run["ended_at"]
    assert any("missing" in s for s in summary.skipped)
    assert {"EnergyJoules", "EnergyPerTokenJoules", "CO2eGrams", "AveragePowerWatts", "Tokens",
            "DurationSeconds"} <= set(summary.metric_names)
    sent = [p for n, p in calls if n == "PutMetricData"][-1]
    assert all(d["Unit"] in ("None", "Seconds", "Count") for d in sent["MetricData"])
    text = repr(sent)
    assert "commit" not in text and "someone@example.com" not in text and "testing" not in text  # allow-list only

    ts = summary.timestamp
    assert _read_back(client, "EnergyJoules", base_dims, ts) == [pytest.approx(report.energy_j)]
    assert _read_back(client, "CO2eGrams", base_dims, ts) == [pytest.approx(report.carbon.g_co2e)]
    assert _read_back(client, "EnergyPerTokenJoules", base_dims, ts) == [pytest.approx(report.j_per_token)]
    assert _read_back(client, "Tokens", base_dims, ts) == [150_000]
    for d in report.devices:  # the stable device dimension: gpu:0, not cw:i-0abc.../gpu:0
        assert d.device.startswith(f"cw:{INSTANCE}/")
        got = _read_back(client, "AveragePowerWatts", {**base_dims, "Device": d.device.split("/")[-1]}, ts)
        assert got == [pytest.approx(d.mean_power_w)]
    lr = report.by_label["l0"]
    assert _read_back(client, "EnergyPerTokenJoules", {**base_dims, "Label": "l0"}, ts) == [pytest.approx(lr.j_per_token)]
    listed = client.list_metrics(Namespace="WattProf", MetricName="EnergyJoules")["Metrics"]
    assert listed and all(m["Namespace"] == "WattProf" for m in listed)


def test_export_batches_within_the_api_limits(moto_url, tmp_path):
    report, _ = _report(moto_url, tmp_path)
    template = next(iter(report.by_label.values()))
    many = {f"label-{i:04d}": dataclasses.replace(template, label=f"label-{i:04d}") for i in range(600)}
    big = dataclasses.replace(report, by_label=many)
    data, _, _ = build_metric_data(big)
    assert len(data) > MAX_DATA_PER_CALL
    calls: list = []
    client = make_factory(moto_url, calls=calls)("cloudwatch")
    summary = export_cloudwatch(big, client=client)
    puts = [p for n, p in calls if n == "PutMetricData"]
    assert summary.calls == len(puts) == math.ceil(len(data) / MAX_DATA_PER_CALL)
    assert summary.data_points == sum(len(p["MetricData"]) for p in puts) == len(data)
    assert all(len(p["MetricData"]) <= MAX_DATA_PER_CALL for p in puts)
    assert isinstance(template, LabelReport)
    assert _read_back(client, "EnergyJoules", {"Name": "nightly-8b", "Label": "label-0599"},
                      summary.timestamp) == [pytest.approx(template.energy_j)]


def test_export_refuses_what_cloudwatch_would_reject(moto_url, tmp_path):
    report, _ = _report(moto_url, tmp_path)
    client = make_factory(moto_url)("cloudwatch")
    with pytest.raises(InputError, match="two weeks"):
        export_cloudwatch(report, client=client, now=report.run["ended_at"] + 15 * 86400)
    with pytest.raises(InputError, match="AWS/"):
        export_cloudwatch(report, client=client, namespace="AWS/EC2")
    with pytest.raises(InputError, match="30 per metric"):
        export_cloudwatch(report, client=client, dimensions={f"D{i}": "x" for i in range(30)})
    denied = make_factory(moto_url, throttle={"PutMetricData": 1}, code="AccessDenied")("cloudwatch")
    with pytest.raises(WattprofError, match="AccessDenied"):
        export_cloudwatch(report, client=denied)


def test_export_cloudwatch_command_round_trips_a_fresh_run(moto_url, tmp_path):
    """The CLI path a nightly job uses: record, then `wattprof export cloudwatch`, then read back."""
    from conftest import wattprof

    run = tmp_path / "fresh"
    wattprof("record", "-q", "-c", "nvml-replay", "-n", "cli-export", "--out", str(run), "--", "sleep", "0.5",
             check=True)
    p = wattprof("export", "cloudwatch", str(run), "--endpoint-url", moto_url, "--aws-region", REGION,
                 "--intensity", "400", check=True)
    assert "data points" in p.stderr
    client = make_factory(moto_url)("cloudwatch")
    ended = json.loads((run / "meta.json").read_text())["ended_at"]
    energy = json.loads(wattprof("report", str(run), "-f", "json", check=True).stdout)["energy_j"]
    assert _read_back(client, "EnergyJoules", {"Name": "cli-export"}, ended) == [pytest.approx(energy)]
    assert _read_back(client, "CO2eGrams", {"Name": "cli-export"}, ended)
    # a dimension CloudWatch would refuse is sanitised, and the command says so
    p = wattprof("export", "cloudwatch", str(run), "--dry-run", "--device-dimension", "full", "--dimension",
                 "Team=Énergie", check=True)
    out = json.loads(p.stdout)
    assert out["dimensions"]["Team"] == "Energie" and "sent as Team=Energie" in out["sanitised"][0]
    assert {d["Value"] for m in out["metric_data"] for d in m["Dimensions"] if d["Name"] == "Device"} == {"gpu:0"}
    p = wattprof("export", "cloudwatch", str(run), "--device-dimension", "mine")
    assert p.returncode == 2 and "Traceback" not in p.stderr
