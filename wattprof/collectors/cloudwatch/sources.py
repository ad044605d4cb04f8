"""What publishes GPU metrics to CloudWatch, under which names and dimension sets, and how a
series is matched to "this machine" (or pod).

Dimension sets as the publishers really write them (the CloudWatch agent's source and the AWS
user guide; REFERENCE.md "AWS CloudWatch"):

- CloudWatch agent, ``nvidia_gpu`` section (namespace ``CWAgent``, metrics ``nvidia_smi_<field>``):
  ``index``, ``name`` and, with newer drivers, ``arch``, plus **either** ``host`` **or** the EC2
  dimensions of ``append_dimensions`` (``InstanceId``, ``InstanceType``, ``ImageId``,
  ``AutoScalingGroupName``): appending EC2 dimensions drops ``host``, and an agent running in a
  container omits ``host`` by default (then a series may carry no machine identity at all).
  ``aggregation_dimensions`` add roll-ups without ``index``.
- Container Insights on EKS (namespace ``ContainerInsights``, from DCGM): ``node_gpu_*`` by
  ``ClusterName, NodeName, InstanceId, InstanceType, GpuDevice`` (roll-ups by ``ClusterName`` and
  ``ClusterName, NodeName, InstanceId``); ``pod_gpu_*`` by ``ClusterName, Namespace, PodName,
  FullPodName, GpuDevice`` (roll-ups without ``GpuDevice``). ``PodName`` is the pod's workload
  (owner) name, ``FullPodName`` the pod itself. All Container Insights data is standard
  resolution (one point per minute).

A series matches the wanted identity when one of its identity dimensions carries a wanted value
(:func:`match`): the same request finds ``host=ip-...`` series and ``InstanceId=i-...`` series,
whichever the agent's configuration produced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

#: Agent release from which ``nvidia_smi_power_draw`` is the driver's *instantaneous* reading when
#: the driver reports one (drivers that split power.draw into instant and average); older agents
#: publish no power at all with such drivers, and the 1 s average with older drivers.
AGENT_INSTANT_POWER_VERSION = (1, 300056, 0)

MIB = 1024.0 * 1024.0


@dataclass(frozen=True)
class MetricMap:
    """One CloudWatch metric and the schema column it fills (value x scale)."""

    metric: str
    column: str
    scale: float = 1.0


@dataclass(frozen=True)
class SourceSpec:
    key: str
    label: str
    namespace: str
    kind: str  # device kind: gpu | neuron
    device_dim: str  # the per-device dimension (roll-ups without it are skipped)
    identity_dims: tuple[str, ...]  # dimensions naming the machine (or pod), preferred first
    metrics: tuple[MetricMap, ...]
    power_metric: str | None
    #: "agent": the agent's interval decides (high resolution below 60 s); "standard": always 60 s
    resolution: Literal["agent", "standard"] = "standard"


SOURCES: dict[str, SourceSpec] = {
    "agent": SourceSpec(
        "agent", "CloudWatch agent", "CWAgent", "gpu", "index", ("InstanceId", "host"),
        (
            MetricMap("nvidia_smi_power_draw", "power_avg_w"),  # the column depends on the agent version
            MetricMap("nvidia_smi_utilization_gpu", "util_pct"),
            MetricMap("nvidia_smi_utilization_memory", "mem_util_pct"),
            MetricMap("nvidia_smi_temperature_gpu", "temp_c"),
            # nvidia-smi reports memory in MiB (the agent's docs say "MB")
            MetricMap("nvidia_smi_memory_used", "mem_used_bytes", MIB),
            MetricMap("nvidia_smi_memory_total", "mem_total_bytes", MIB),
            MetricMap("nvidia_smi_clocks_current_sm", "sm_clock_mhz"),
            MetricMap("nvidia_smi_clocks_current_memory", "mem_clock_mhz"),
        ),
        "nvidia_smi_power_draw", resolution="agent",
    ),
    "container-insights": SourceSpec(
        "container-insights", "Container Insights", "ContainerInsights", "gpu", "GpuDevice",
        ("InstanceId", "NodeName"),
        (
            MetricMap("node_gpu_power_draw", "power_avg_w"),  # DCGM_FI_DEV_POWER_USAGE (W)
            MetricMap("node_gpu_utilization", "util_pct"),
            MetricMap("node_gpu_temperature", "temp_c"),
            MetricMap("node_gpu_memory_used", "mem_used_bytes"),
            MetricMap("node_gpu_memory_total", "mem_total_bytes"),
        ),
        "node_gpu_power_draw",
    ),
    "pod": SourceSpec(
        "pod", "Container Insights (pod)", "ContainerInsights", "gpu", "GpuDevice", ("FullPodName", "PodName"),
        (
            MetricMap("pod_gpu_power_draw", "power_avg_w"),  # the power of the GPUs the pod holds
            MetricMap("pod_gpu_utilization", "util_pct"),
            MetricMap("pod_gpu_temperature", "temp_c"),
            MetricMap("pod_gpu_memory_used", "mem_used_bytes"),
            MetricMap("pod_gpu_memory_total", "mem_total_bytes"),
        ),
        "pod_gpu_power_draw",
    ),
    "neuron": SourceSpec(
        "neuron", "Container Insights", "ContainerInsights", "neuron", "NeuronCore", ("InstanceId", "NodeName"),
        (MetricMap("node_neuroncore_utilization", "util_pct"),),
        None,
    ),
}

ALIASES = {"cwagent": "agent", "containerinsights": "container-insights", "ci": "container-insights",
           "pod-gpu": "pod", "eks-pod": "pod"}


def source(key: str) -> SourceSpec | None:
    k = str(key).lower().replace("_", "-")
    return SOURCES.get(ALIASES.get(k, k))


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """``"1.300056.0b1234"`` -> ``(1, 300056, 0)``; None when it is not a version."""
    if not text:
        return None
    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    if not m:
        return None
    return tuple(int(x) for x in m.groups(default="0"))


@dataclass(frozen=True)
class PowerSemantics:
    column: str  # power_w (instantaneous readings) or power_avg_w (1 s averages)
    description: str  # what a value is, for the device's power_source
    note: str | None = None  # said once per run when the semantics are assumed


def agent_power_semantics(agent_version: str | None, power: str | None = None) -> PowerSemantics:
    """What ``nvidia_smi_power_draw`` holds, by agent version (or an explicit ``power`` choice)."""
    choice = (power or "auto").lower()
    if choice in ("instant", "instantaneous"):
        return PowerSemantics("power_w", "instantaneous readings (power=instant)")
    if choice in ("average", "avg", "averaged"):
        return PowerSemantics("power_avg_w", "1 s averaged readings (power=average)")
    version = parse_version(agent_version)
    if version is None:
        return PowerSemantics(
            "power_w", "instantaneous readings (assumed: agent 1.300056.0 or newer)",
            "the agent's version is unknown: nvidia_smi_power_draw is taken as the instantaneous reading that "
            "agents 1.300056.0 and newer publish (older agents with older drivers publish the 1 s average); pass "
            "agent_version=X.Y.Z or power=average to say otherwise")
    if version >= AGENT_INSTANT_POWER_VERSION:
        return PowerSemantics("power_w", f"instantaneous readings (agent {agent_version})")
    return PowerSemantics(
        "power_avg_w", f"1 s averaged readings (agent {agent_version})",
        f"agent {agent_version} publishes nvidia_smi_power_draw only with drivers that still report one "
        "power.draw (the 1 s average); with newer drivers it publishes no power: upgrade to 1.300056.0 or newer")


def match(dims: Mapping[str, str], spec: SourceSpec, wanted: Mapping[str, str | None],
          required: Mapping[str, str]) -> Literal["yes", "no", "anonymous"]:
    """Does a series with ``dims`` belong to the wanted machine (or pod)?

    ``required``: dimensions the series must carry with these values (user filters, cluster,
    namespace). ``wanted``: identity dimension -> value (None: unknown); the series matches when one
    of its identity dimensions carries the wanted value (``host`` *or* ``InstanceId``, whichever the
    agent published). A series with no identity dimension at all (an agent in a container without
    ``append_dimensions``) is ``anonymous``: it cannot be told apart from other machines' series."""
    if any(dims.get(k) != v for k, v in required.items()):
        return "no"
    present = [d for d in spec.identity_dims if dims.get(d)]
    known = {k: v for k, v in wanted.items() if v}
    if not known:
        return "yes" if present else "anonymous"
    if not present:
        return "anonymous"
    return "yes" if any(dims.get(k) == v for k, v in known.items()) else "no"


def machine_of(dims: Mapping[str, str], spec: SourceSpec) -> str:
    """The machine (or pod) part of a device id: the first identity dimension present."""
    machine = next((dims[d] for d in spec.identity_dims if dims.get(d)), None) or "unidentified"
    return re.sub(r"[/\s]+", "_", machine)


def device_part(value: str) -> str:
    """``"nvidia3"`` -> ``"3"``; ``"0"`` -> ``"0"``; anything else made id-safe."""
    m = re.search(r"(\d+)$", value)
    if m and (value.isdigit() or value[: m.start()].isalpha()):
        return str(int(m.group(1)))
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", value) or "x"
