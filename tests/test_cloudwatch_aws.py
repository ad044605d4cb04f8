# ruff: noqa: F811 - the shared fixtures are imported from test_cloudwatch and requested by name
"""CloudWatch as a real account behaves: the agent's real dimension sets, metrics listed late, data
arriving after the run, periods by storage resolution, per-call limits, instance metadata, EKS
pods, and an exporter that CloudWatch's input rules cannot trip. Everything runs against the strict
fake (tests/cloudwatch_fake.py) in front of moto's server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from botocore.exceptions import ClientError  # noqa: E402
from test_cloudwatch import (  # noqa: E402, F401 - fixtures are used by name
    GPU_NAME,
    HOST,
    INSTANCE,
    REGION,
    _report,
    aws_env,
    make_factory,
    moto_server_url,
    moto_url,
    put_agent_metrics,
    recent_minute,
    strict_cw,
)

from wattprof.clock import ManualClock  # noqa: E402
from wattprof.collectors.cloudwatch import (  # noqa: E402
    MAX_POINTS_PER_CALL,
    CloudWatchCollector,
    ec2_identity,
    plan_calls,
    pod_identity,
)
from wattprof.collectors.cloudwatch.aws import aws_available  # noqa: E402
from wattprof.errors import CollectorError, InputError  # noqa: E402
from wattprof.exporters.cloudwatch import PartialExportError, export_cloudwatch, sanitize  # noqa: E402
from wattprof.recording.recorder import Recorder  # noqa: E402
from wattprof.run import Run, RunWriter  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "cloudwatch"


class EventClock(ManualClock):
    """Manual time whose sleep runs what was scheduled for the moments it passes (the agent's late
    flushes), so waiting for late data takes no real time."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.jobs: list[tuple[float, object]] = []

    def at(self, t: float, fn) -> None:
        self.jobs.append((t, fn))

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        due = [j for j in self.jobs if j[0] <= self.time()]
        self.jobs = [j for j in self.jobs if j[0] > self.time()]
        for _, fn in sorted(due, key=lambda j: j[0]):
            fn()


# ---- identity: the agent's real dimension sets ---------------------------------------------------------

@pytest.mark.parametrize(("style", "options", "machine"), [
    ("appended", {"instance_id": INSTANCE}, INSTANCE),  # append_dimensions: InstanceId, no host
    ("host", {"host": HOST}, HOST),  # no append_dimensions: host
    ("host", {"host": HOST, "instance_id": INSTANCE}, HOST),  # both given: whichever is present
    ("appended", {"host": HOST, "instance_id": INSTANCE}, INSTANCE),
    ("container", {"instance_id": INSTANCE}, INSTANCE),  # containerised agent: no identity at all
])
def test_each_agent_dimension_set_is_found_by_the_identity_present(moto_url, style, options, machine):
    t_first = recent_minute()
    factory = make_factory(moto_url)
    put_agent_metrics(factory("cloudwatch"), t_first, minutes=3, style=style)
    c = CloudWatchCollector(clock=ManualClock(t_first + 400), client_factory=factory, **options)
    devices = c.open()
    assert set(devices) == {f"cw:{machine}/gpu:0", f"cw:{machine}/gpu:1"}  # the roll-up is not a device
    assert devices[f"cw:{machine}/gpu:0"]["name"] == GPU_NAME
    rows = c.fetch(t_first, t_first + 180)
    assert {r["device"] for r in rows if r.get("power_w")} == set(devices)
    if style == "container":
        assert any("carry no InstanceId or host" in n for n in c.notes)


def test_a_host_filter_on_instance_named_series_says_which_option_finds_them(moto_url):
    t_first = recent_minute()
    factory = make_factory(moto_url)
    put_agent_metrics(factory("cloudwatch"), t_first, minutes=2, style="appended")
    c = CloudWatchCollector(clock=ManualClock(t_first + 200), host=HOST, client_factory=factory, wait_s=0)
    assert c.open() == {}
    with pytest.raises(CollectorError, match=r"named by InstanceId: filter with instance_id=\.\.\."):
        c.fetch(t_first, t_first + 120)


def test_this_instance_is_found_from_instance_metadata(moto_url, monkeypatch, imds):
    t_first = recent_minute()
    factory = make_factory(moto_url)
    put_agent_metrics(factory("cloudwatch"), t_first, minutes=2, style="appended")
    put_agent_metrics(factory("cloudwatch"), t_first, minutes=2, style="appended", instance="i-0someoneelse")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url)
    c = CloudWatchCollector(clock=ManualClock(t_first + 200), client_factory=factory)
    assert set(c.open()) == {f"cw:{INSTANCE}/gpu:0", f"cw:{INSTANCE}/gpu:1"}  # no options: this instance only


# ---- instance metadata (IMDSv2) -----------------------------------------------------------------------

class FakeImds:
    """IMDSv2 on 127.0.0.1: a token from PUT /latest/api/token, required by every GET."""

    TOKEN = "tok-123"

    def __init__(self, *, silent: bool = False) -> None:
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, text: str) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text.encode())

            def do_PUT(self):  # noqa: N802
                fake.requests.append(("PUT", self.path))
                if silent:
                    time.sleep(5)
                    return
                ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                self._send(200 if ok else 400, fake.TOKEN if ok else "")

            def do_GET(self):  # noqa: N802
                fake.requests.append(("GET", self.path))
                if self.headers.get("X-aws-ec2-metadata-token") != fake.TOKEN:
                    return self._send(401, "")
                values = {"/latest/meta-data/instance-id": INSTANCE, "/latest/meta-data/placement/region": "eu-west-1",
                          "/latest/meta-data/instance-type": "p5.48xlarge",
                          "/latest/meta-data/local-hostname": HOST}
                self._send(200, values[self.path]) if self.path in values else self._send(404, "")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def imds():
    from wattprof.collectors.cloudwatch import identity

    identity._cache.clear()
    fake = FakeImds()
    yield fake
    fake.stop()
    identity._cache.clear()


def test_imdsv2_gives_instance_and_region_and_a_non_ec2_run_is_not_held_up(imds, monkeypatch):
    env = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url}
    ident = ec2_identity(env=env)
    assert (ident.instance_id, ident.region, ident.instance_type, ident.local_hostname) == (
        INSTANCE, "eu-west-1", "p5.48xlarge", HOST)
    assert imds.requests[0] == ("PUT", "/latest/api/token")  # IMDSv2: token first

    # the region comes from instance metadata when nothing else sets one
    for k in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url)
    ok, why = aws_available()
    assert ok and why.startswith("region eu-west-1")

    # disabled: no request at all
    n = len(imds.requests)
    assert ec2_identity(env={**env, "AWS_EC2_METADATA_DISABLED": "true"}, refresh=True) is None
    assert len(imds.requests) == n

    # nothing listening (not EC2): None at once
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    t = time.monotonic()
    assert ec2_identity(env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{free}"}, refresh=True) is None
    assert time.monotonic() - t < 1.0
    # a metadata service that never answers (a container past the hop limit): the short timeout
    silent = FakeImds(silent=True)
    try:
        t = time.monotonic()
        assert ec2_identity(env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": silent.url}, timeout_s=0.3,
                            refresh=True) is None
        assert time.monotonic() - t < 2.0
    finally:
        silent.server.server_close()


# ---- discovery again at the run's end, late data -----------------------------------------------------------

def test_a_metric_listed_only_after_the_run_started_is_fetched_and_its_devices_kept(moto_url, strict_cw, tmp_path):
    """A freshly booted instance: ListMetrics shows the agent's metrics only 10 minutes after they
    are first published; the collector opens with nothing listed, and finds them when the run ends."""
    t_first = recent_minute()
    clock = ManualClock(t_first)
    strict_cw.clock, strict_cw.list_delay_s = clock.time, 600.0
    factory = make_factory(moto_url)
    put_agent_metrics(factory("cloudwatch"), t_first, minutes=12, style="appended")
    c = CloudWatchCollector(clock=clock, instance_id=INSTANCE, client_factory=factory, agent_version="1.300057.0")
    w = RunWriter.create(tmp_path / "run", name="fresh", clock_time=clock.time())
    rec = Recorder(w, [c], clock=clock)
    rec.start(background=False)
    assert c._series == []  # nothing listed yet, and the collector was not dropped
    clock.set(t_first + 700)
    rec.stop()
    w.finalize(status="finished", ended_at=clock.time())
    run = Run.open(tmp_path / "run")
    assert {f"cw:{INSTANCE}/gpu:0", f"cw:{INSTANCE}/gpu:1"} <= set(run.meta["devices"])
    assert run.meta["devices"][f"cw:{INSTANCE}/gpu:0"]["power_source"].startswith(
        "measured: CloudWatch agent nvidia_smi_power_draw (period 10 s")
    assert set(run.samples["device"]) == {f"cw:{INSTANCE}/gpu:0", f"cw:{INSTANCE}/gpu:1"}
    assert run.samples["t"].max() == t_first + 700


def test_data_arriving_up_to_60_s_after_the_run_is_waited_for(moto_url, caplog):
    t_first = recent_minute()
    factory = make_factory(moto_url)
    client = factory("cloudwatch")
    t1 = t_first + 300
    put_agent_metrics(client, t_first, minutes=6, style="appended", t_until=t1 - 60)  # flushed during the run
    clock = EventClock(t1 + 1)
    clock.at(t1 + 55, lambda: put_agent_metrics(client, t_first, minutes=6, style="appended", t_from=t1 - 59,
                                                t_until=t1 + 10, rollup=False))  # the agent's last flush
    c = CloudWatchCollector(clock=clock, instance_id=INSTANCE, client_factory=factory, poll_s=10)
    c.open()
    with caplog.at_level(logging.WARNING, logger="wattprof.collectors.cloudwatch"):
        rows = c.fetch(t_first, t1)
    waiting = [r.getMessage() for r in caplog.records if "waiting up to" in r.getMessage()]
    assert len(waiting) == 1 and "wait_s=120" in waiting[0]  # the status line says so, once
    assert 54 <= c.waited_s <= 70  # stopped polling once the run's end was covered
    last = max(r["t"] for r in rows if r.get("power_w") is not None and r["t"] < t1)
    assert last > t1 - 10
    assert not any("no data for the last" in n for n in c.notes)
    assert any("waited" in n and "late data" in n for n in c.notes)
    assert len(c.notes) == len(set(c.notes))

    # not waiting: what is missing is flagged, and nothing is invented
    put_agent_metrics(client, t_first + 3600, minutes=6, style="appended", t_until=t_first + 3600 + 240)
    c = CloudWatchCollector(clock=ManualClock(t_first + 3901), instance_id=INSTANCE, client_factory=factory, wait_s=0)
    c.open()
    rows = c.fetch(t_first + 3600, t_first + 3900)
    assert any("no data for the last" in n for n in c.notes)
    assert max(r["t"] for r in rows) < t_first + 3900


# ---- periods and limits ---------------------------------------------------------------------------------

def test_the_strict_fake_refuses_what_cloudwatch_refuses(moto_url, strict_cw):
    strict_cw.expect_rejections = True
    t_first = recent_minute()
    client = make_factory(moto_url)("cloudwatch")
    put_agent_metrics(client, t_first, minutes=3, step=60, style="host")  # standard resolution
    dims = [{"Name": "index", "Value": "0"}, {"Name": "name", "Value": GPU_NAME}, {"Name": "arch", "Value": "x86_64"},
            {"Name": "host", "Value": HOST}]

    def query(period, n=1, hours=0.1):
        q = [{"Id": f"q{i}", "MetricStat": {"Metric": {"Namespace": "CWAgent", "MetricName": "nvidia_smi_power_draw",
                                                        "Dimensions": dims}, "Period": period, "Stat": "Average"}}
             for i in range(n)]
        return client.get_metric_data(MetricDataQueries=q, StartTime=datetime.fromtimestamp(t_first, tz=UTC),
                                      EndTime=datetime.fromtimestamp(t_first + hours * 3600, tz=UTC))

    assert query(60)["MetricDataResults"][0]["Values"]
    for bad in (10, 90):
        with pytest.raises(ClientError, match="not valid for standard-resolution"):
            query(bad)
    with pytest.raises(ClientError, match="at most 500"):
        query(60, n=501)
    with pytest.raises(ClientError, match="at most 100800"):
        query(60, n=200, hours=10)  # 200 x 600 points
    bad = [{"MetricName": "m", "Value": 1.0, "Dimensions": [{"Name": "Label", "Value": v}]} for v in ("décodé",)]
    with pytest.raises(ClientError, match="ASCII"):
        client.put_metric_data(Namespace="WattProf", MetricData=bad)
    with pytest.raises(ClientError, match="non-whitespace"):
        client.put_metric_data(Namespace="WattProf", MetricData=[
            {"MetricName": "m", "Value": 1.0, "Dimensions": [{"Name": "Label", "Value": "  "}]}])
    with pytest.raises(ClientError, match="at most 1000"):
        client.put_metric_data(Namespace="WattProf", MetricData=[{"MetricName": "m", "Value": 1.0}] * 1001)


def test_period_follows_the_storage_resolution(moto_url, strict_cw):
    t_first = recent_minute()
    factory = make_factory(moto_url)
    put_agent_metrics(factory("cloudwatch"), t_first, minutes=4, step=60, style="appended")  # the default 60 s
    c = CloudWatchCollector(clock=ManualClock(t_first + 400), instance_id=INSTANCE, client_factory=factory)
    c.open()
    c.fetch(t_first, t_first + 240)
    assert c.last_period == 60
    assert {tuple(s["periods"]) for op, s in strict_cw.calls if op == "GetMetricData"} == {(60,)}
    with pytest.raises(InputError, match="standard resolution"):
        CloudWatchCollector(clock=ManualClock(t_first + 400), instance_id=INSTANCE, client_factory=factory,
                            period=10).fetch(t_first, t_first + 240)

    # high resolution every 20 s: read at 20 s (a valid sub-minute period; 1 s would cost 20x the points)
    put_agent_metrics(factory("cloudwatch"), t_first, minutes=4, step=20, style="appended", instance="i-0fast")
    c = CloudWatchCollector(clock=ManualClock(t_first + 400), instance_id="i-0fast", client_factory=factory)
    c.open()
    rows = c.fetch(t_first, t_first + 240)
    assert c.last_period == 20 and rows


def test_queries_are_split_within_the_per_call_limits(moto_url, strict_cw):
    # pure planning: 500 queries and 100,800 points per call
    calls = plan_calls(1200, 0.0, 3600.0, 60)
    assert [len(c.queries) for c in calls] == [500, 500, 200]
    calls = plan_calls(40, 0.0, 3 * 3600.0, 1)  # 10,800 points per query: 9 queries per call
    assert all(c.points <= MAX_POINTS_PER_CALL for c in calls) and sum(len(c.queries) for c in calls) == 40
    calls = plan_calls(1, 0.0, 2 * 86400.0, 1)  # one query longer than a call allows: cut in time
    assert len(calls) == 2 and calls[0].end == calls[1].start and all(c.points <= MAX_POINTS_PER_CALL for c in calls)

    # a fleet: 260 machines x 2 GPUs = 520 power series in one fetch (more than one call holds)
    t_first = recent_minute()
    client = make_factory(moto_url)("cloudwatch")
    data = []
    for m in range(260):
        for gpu in (0, 1):
            dims = [{"Name": "index", "Value": str(gpu)}, {"Name": "name", "Value": GPU_NAME},
                    {"Name": "arch", "Value": "x86_64"}, {"Name": "InstanceId", "Value": f"i-{m:017x}"}]
            data.append({"MetricName": "nvidia_smi_power_draw", "Dimensions": dims, "Value": 100.0 + m,
                         "Timestamp": datetime.fromtimestamp(t_first + 60, tz=UTC)})
    for i in range(0, len(data), 1000):
        client.put_metric_data(Namespace="CWAgent", MetricData=data[i:i + 1000])
    c = CloudWatchCollector(clock=ManualClock(t_first + 400), all_hosts=1, client_factory=make_factory(moto_url),
                            wait_s=0)
    assert len(c.open()) == 520
    rows = c.fetch(t_first, t_first + 120)
    assert len({r["device"] for r in rows}) == 520
    gets = [s for op, s in strict_cw.calls if op == "GetMetricData"]
    assert sorted(s["queries"] for s in gets) == [20, 20, 500, 500]  # the probe and the data: 500 + 20 each


# ---- power semantics ---------------------------------------------------------------------------------------

def test_power_is_labelled_by_agent_version_and_missing_power_is_said(moto_url, tmp_path):
    t_first = recent_minute()
    factory = make_factory(moto_url)
    put_agent_metrics(factory("cloudwatch"), t_first, minutes=3, style="appended")
    old = CloudWatchCollector(clock=ManualClock(t_first + 400), instance_id=INSTANCE, client_factory=factory,
                              agent_version="1.300040.0")
    old.open()
    rows = old.fetch(t_first, t_first + 180)
    assert any("power_avg_w" in r for r in rows) and not any("power_w" in r for r in rows)
    assert "1 s averaged readings (agent 1.300040.0)" in old.devices_after_fetch[f"cw:{INSTANCE}/gpu:0"]["power_source"]
    assert any("publishes no power" in n for n in old.notes)
    unknown = CloudWatchCollector(clock=ManualClock(t_first + 400), instance_id=INSTANCE, client_factory=factory)
    unknown.open()
    assert any("power_w" in r for r in unknown.fetch(t_first, t_first + 180))
    assert any("version is unknown" in n for n in unknown.notes)

    # an agent that publishes no power (older agent, newer driver): said, in the device and the run's events
    client = factory("cloudwatch")
    dims = [{"Name": "index", "Value": "0"}, {"Name": "name", "Value": GPU_NAME}, {"Name": "arch", "Value": "x86_64"},
            {"Name": "InstanceId", "Value": "i-0nopower"}]
    client.put_metric_data(Namespace="CWAgent", MetricData=[
        {"MetricName": "nvidia_smi_utilization_gpu", "Dimensions": dims, "Value": 50.0, "StorageResolution": 1,
         "Timestamp": datetime.fromtimestamp(t_first + s, tz=UTC)} for s in range(0, 181, 10)])
    clock = ManualClock(t_first)
    w = RunWriter.create(tmp_path / "run", name="nopower", clock_time=clock.time())
    c = CloudWatchCollector(clock=clock, instance_id="i-0nopower", client_factory=factory, wait_s=0)
    rec = Recorder(w, [c], clock=clock)
    rec.start(background=False)
    clock.set(t_first + 180)
    rec.stop()
    w.finalize(status="finished", ended_at=clock.time())
    run = Run.open(tmp_path / "run")
    assert run.meta["devices"]["cw:i-0nopower/gpu:0"]["power_source"].startswith(
        "none: CloudWatch agent publishes no nvidia_smi_power_draw")
    assert any("no nvidia_smi_power_draw metric" in m and "1.300056.0" in m for m in run.events["message"])


# ---- EKS: node and pod from the pod's environment --------------------------------------------------------

def test_eks_pod_gpu_power_by_pod_from_the_pod_environment(moto_url, monkeypatch, tmp_path):
    t_first = recent_minute()
    client = make_factory(moto_url)("cloudwatch")
    data = []
    pods = {"trainer-7d9f-abcde": ("trainer", (0, 1), 500.0), "other-5c4b-zzzzz": ("other", (2,), 200.0)}
    for k in range(6):
        when = datetime.fromtimestamp(t_first + 60 * k, tz=UTC)
        for full, (owner, gpus, watts) in pods.items():
            base = {"ClusterName": "train", "Namespace": "ml", "PodName": owner, "FullPodName": full}
            for gpu in gpus:
                for name, value in (("pod_gpu_power_draw", watts + gpu), ("pod_gpu_utilization", 90.0)):
                    data.append({"MetricName": name, "Timestamp": when, "Value": value, "Dimensions": [
                        {"Name": a, "Value": b} for a, b in {**base, "GpuDevice": f"nvidia{gpu}"}.items()]})
            data.append({"MetricName": "pod_gpu_power_draw", "Timestamp": when, "Value": 999.0,  # a roll-up
                         "Dimensions": [{"Name": a, "Value": b} for a, b in base.items()]})
        for node_name, instance, gpus in (("ip-10-0-3-4.ec2.internal", "i-0eks", 3), ("ip-10-0-9-9.ec2.internal",
                                                                                       "i-0eks2", 2)):
            for gpu in range(gpus):
                node = {"ClusterName": "train", "NodeName": node_name, "InstanceId": instance,
                        "InstanceType": "p5.48xlarge", "GpuDevice": f"nvidia{gpu}"}
                data.append({"MetricName": "node_gpu_power_draw", "Timestamp": when, "Value": 300.0,
                             "Dimensions": [{"Name": a, "Value": b} for a, b in node.items()]})
    client.put_metric_data(Namespace="ContainerInsights", MetricData=data)

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.100.0.1")
    monkeypatch.setenv("HOSTNAME", "trainer-7d9f-abcde")  # a pod's hostname is its name
    monkeypatch.setenv("POD_NAMESPACE", "ml")
    monkeypatch.setenv("NODE_NAME", "ip-10-0-3-4.ec2.internal")
    ident = pod_identity(sa_namespace_file=str(tmp_path / "none"))
    assert (ident.pod_name, ident.namespace, ident.node_name) == ("trainer-7d9f-abcde", "ml", "ip-10-0-3-4.ec2.internal")

    pod = CloudWatchCollector(clock=ManualClock(t_first + 400), source="pod", cluster="train",
                              client_factory=make_factory(moto_url), wait_s=0)
    devs = pod.open()
    assert set(devs) == {"cw:trainer-7d9f-abcde/gpu:0", "cw:trainer-7d9f-abcde/gpu:1"}  # this pod's GPUs only
    assert devs["cw:trainer-7d9f-abcde/gpu:0"]["pod"] == "trainer-7d9f-abcde"
    rows = pod.fetch(t_first, t_first + 300)
    e = {d: np.trapezoid([r["power_avg_w"] for r in rows if r["device"] == d],
                         [r["t"] for r in rows if r["device"] == d]) for d in devs}
    assert e == {"cw:trainer-7d9f-abcde/gpu:0": pytest.approx(500.0 * 300),
                 "cw:trainer-7d9f-abcde/gpu:1": pytest.approx(501.0 * 300)}

    node = CloudWatchCollector(clock=ManualClock(t_first + 400), source="container-insights",
                               client_factory=make_factory(moto_url), wait_s=0)
    assert set(node.open()) == {f"cw:i-0eks/gpu:{g}" for g in range(3)}  # the node from NODE_NAME, not the other
    assert pod.power_semantics is None and "period 60 s" in pod.devices_after_fetch[
        "cw:trainer-7d9f-abcde/gpu:0"]["power_source"]


# ---- the exporter against CloudWatch's input rules ---------------------------------------------------------

def test_export_sanitises_dimension_values_and_says_so(moto_url, strict_cw, tmp_path):
    report, _ = _report(moto_url, tmp_path)
    client = make_factory(moto_url)("cloudwatch")
    summary = export_cloudwatch(report, client=client, dimensions={"Team": "Énergie\tGPU", "Blank": "   "})
    assert not strict_cw.rejected  # the fake would have refused the whole request otherwise
    assert summary.dimensions == {"Name": "nightly-8b", "Team": "Energie GPU", "Blank": "_"}
    assert any("'Énergie\\tGPU'" in n and "Energie GPU" in n for n in summary.sanitised)
    assert sanitize("naïve 数据") == "naive __" and sanitize("\x00\x01") == "_"


def test_a_failed_multi_call_export_says_exactly_what_was_sent(moto_url, strict_cw, tmp_path):
    import dataclasses

    report, _ = _report(moto_url, tmp_path)
    template = next(iter(report.by_label.values()))
    many = {f"label-{i:04d}": dataclasses.replace(template, label=f"label-{i:04d}") for i in range(600)}
    big = dataclasses.replace(report, by_label=many)

    def denied_second_call(service, **kwargs):
        client = make_factory(moto_url)(service, **kwargs)
        state = {"n": 0}

        def deny(model, params, **_):
            if model.name == "PutMetricData":
                state["n"] += 1
                if state["n"] == 2:
                    raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"},
                                       "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutMetricData")

        client.meta.events.register("before-call.cloudwatch", deny)
        return client

    before = len(strict_cw.calls)
    with pytest.raises(PartialExportError, match=r"call 2 of 2 failed: AccessDenied.*Sent: 1000 data points") as e:
        export_cloudwatch(big, client_factory=denied_second_call)
    assert e.value.sent.data_points == 1000 and e.value.sent.calls == 1 and e.value.not_sent > 0
    puts = [s for op, s in strict_cw.calls[before:] if op == "PutMetricData"]
    assert [p["data"] for p in puts] == [1000]  # exactly what the error says went through


def test_dashboard_and_alarm_examples_work_against_the_api(moto_url, tmp_path):
    dashboard = json.loads((EXAMPLES / "dashboard.json").read_text())
    names = {m[1] for w in dashboard["widgets"] for m in w["properties"]["metrics"] if isinstance(m[0], str)}
    assert names <= {"EnergyPerTokenJoules", "EnergyJoules", "CO2eGrams", "AveragePowerWatts", "Tokens",
                     "DurationSeconds"}  # only what the exporter writes
    alarm = json.loads((EXAMPLES / "alarm-energy-per-token.json").read_text())
    client = make_factory(moto_url)("cloudwatch")
    client.put_metric_alarm(**alarm)
    got = client.describe_alarms(AlarmNames=[alarm["AlarmName"]])["MetricAlarms"][0]
    assert got["MetricName"] == "EnergyPerTokenJoules" and got["Namespace"] == "WattProf"
    # the exported series the alarm watches exists under exactly those dimensions
    report, _ = _report(moto_url, tmp_path)
    export_cloudwatch(report, client=client)
    listed = client.list_metrics(Namespace="WattProf", MetricName="EnergyPerTokenJoules",
                                 Dimensions=[{"Name": "Name", "Value": report.run["name"]}])["Metrics"]
    assert any(m["Dimensions"] == [{"Name": "Name", "Value": report.run["name"]}] for m in listed)
    agent = json.loads((EXAMPLES / "agent-config.json").read_text())
    assert "InstanceId" in agent["metrics"]["append_dimensions"]
    assert REGION


def test_bad_options_are_one_line_usage_errors():
    from conftest import wattprof

    for bad, what in (({"wait_s": "abc"}, "wait_s='abc'"), ({"power": "peak"}, "power 'peak'"),
                      ({"identity": "mine"}, "identity 'mine'"), ({"source": "dcgm"}, "source 'dcgm'")):
        with pytest.raises(InputError, match=what):
            CloudWatchCollector(**bad)
    p = wattprof("record", "-q", "-c", "cloudwatch:wait_s=abc", "--", "true")
    assert p.returncode == 2 and "cloudwatch wait_s='abc': expected a number" in p.stderr
    assert "Traceback" not in p.stderr


def test_export_batches_stay_under_the_request_size_limit(moto_url, strict_cw, tmp_path):
    import dataclasses

    report, _ = _report(moto_url, tmp_path)
    template = next(iter(report.by_label.values()))
    long = {f"{'x' * 1000}-{i:04d}": dataclasses.replace(template, label=f"{'x' * 1000}-{i:04d}") for i in range(400)}
    big = dataclasses.replace(report, by_label=long)
    before = len(strict_cw.calls)
    summary = export_cloudwatch(big, client=make_factory(moto_url)("cloudwatch"))
    puts = [s for op, s in strict_cw.calls[before:] if op == "PutMetricData"]
    assert not strict_cw.rejected and summary.calls == len(puts) >= 2
    assert all(p["data"] < 1000 and p["bytes"] <= 1_000_000 for p in puts)  # split by size, not count
    assert sum(p["data"] for p in puts) == summary.data_points
