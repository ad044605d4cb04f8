"""The CloudWatch collector's options: one dataclass, checked once.

``cloudwatch:source=pod,pod=trainer-0,wait_s=0`` on the command line and
``CloudWatchCollector(CloudWatchOptions(source="pod", ...))`` in Python reach the same
:class:`CloudWatchOptions`; :meth:`CloudWatchOptions.checked` turns the raw values (strings from a
collector spec, or Python values) into typed ones, with a one-line :class:`InputError` for a bad one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ...errors import InputError

DEFAULT_WAIT_S = 120.0  # the agent's 60 s buffer + ingestion + the last standard-resolution minute
DEFAULT_POLL_S = 15.0
POWER_CHOICES = ("auto", "instant", "instantaneous", "average", "avg", "averaged")


def parse_dims(value: str | Mapping[str, Any] | None) -> dict[str, str]:
    """``"K=V;K=V"`` (``;`` because ``,`` separates collector options) or a mapping -> dict."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for part in str(value).split(";"):
        if not part.strip():
            continue
        k, eq, v = part.partition("=")
        if not eq or not k.strip() or not v.strip():
            raise InputError(f"cloudwatch dimensions: {part!r} is not NAME=VALUE (separate pairs with ';')")
        out[k.strip()] = v.strip()
    return out


def _number(name: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"cloudwatch {name}={value!r}: expected a number of seconds") from None
    if not math.isfinite(x):
        raise InputError(f"cloudwatch {name}={value!r}: expected a finite number")
    return x


def _flag(value: Any) -> bool:
    return str(value).strip().lower() not in ("0", "false", "no", "off", "")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class CloudWatchOptions:
    """What to read from CloudWatch (all optional).

    ``source`` agent | container-insights | pod | neuron; ``namespace``; ``host`` (agent: the
    ``host`` dimension; Container Insights: ``NodeName``); ``instance_id``; ``cluster``; ``pod``,
    ``pod_namespace`` (source=pod); ``identity`` (auto: this machine from instance metadata and the
    pod's environment when no host/instance_id/pod is given; none: off); ``dimensions`` ("K=V;K=V",
    extra filters, or with ``discover=0`` the series' complete dimensions); ``indices`` ("0;1", with
    ``discover=0``); ``period`` (auto or seconds); ``all_hosts`` (allow series of several machines in
    one run); ``wait_s`` (how long after the run's end to wait for late data, default 120; 0: don't)
    and ``poll_s``; ``agent_version`` and ``power`` (auto | instant | average: what
    nvidia_smi_power_draw holds); ``region``, ``endpoint_url``, ``profile``; ``max_retries``,
    ``backoff_s``.
    """

    source: str = "agent"
    namespace: str | None = None
    host: str | None = None
    instance_id: str | None = None
    cluster: str | None = None
    pod: str | None = None
    pod_namespace: str | None = None
    identity: str = "auto"
    dimensions: Mapping[str, str] = field(default_factory=dict)
    discover: bool = True
    indices: tuple[str, ...] = ()
    period: int | str = "auto"
    all_hosts: bool = False
    wait_s: float = DEFAULT_WAIT_S
    poll_s: float = DEFAULT_POLL_S
    agent_version: str | None = None
    power: str = "auto"
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    max_retries: int = 5
    backoff_s: float = 0.5

    def checked(self) -> CloudWatchOptions:
        """The options with raw values (strings from a collector spec) typed and checked."""
        identity = str(self.identity).lower()
        if identity not in ("auto", "none"):
            raise InputError(f"cloudwatch identity {self.identity!r}: expected auto or none")
        power = str(self.power).lower()
        if power not in POWER_CHOICES:
            raise InputError(f"cloudwatch power {self.power!r}: expected auto, instant or average")
        raw_indices: Any = self.indices
        if isinstance(raw_indices, (str, int)):
            raw_indices = str(raw_indices).split(";")
        indices = tuple(s.strip() for s in (str(i) for i in raw_indices or ()) if s.strip())
        wait_s, poll_s = _number("wait_s", self.wait_s), _number("poll_s", self.poll_s)
        if wait_s < 0 or poll_s <= 0:
            raise InputError("cloudwatch wait_s must be >= 0 and poll_s > 0 (seconds)")
        return replace(
            self, host=_text(self.host), instance_id=_text(self.instance_id), cluster=_text(self.cluster),
            pod=_text(self.pod), pod_namespace=_text(self.pod_namespace), identity=identity,
            dimensions=parse_dims(self.dimensions), discover=_flag(self.discover), indices=indices,
            all_hosts=_flag(self.all_hosts), wait_s=wait_s, poll_s=poll_s, agent_version=_text(self.agent_version),
            power=power, max_retries=int(_number("max_retries", self.max_retries)),
            backoff_s=_number("backoff_s", self.backoff_s))
