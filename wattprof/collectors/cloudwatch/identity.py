"""Who "this machine" is on AWS: the EC2 instance (IMDSv2) and, on EKS, the node and pod.

- :func:`ec2_identity`: instance id, region, instance type and local hostname from the instance
  metadata service, version 2 (a session token from ``PUT /latest/api/token``, then ``GET
  /latest/meta-data/...`` with ``X-aws-ec2-metadata-token``). It honours the AWS SDKs' settings
  ``AWS_EC2_METADATA_DISABLED=true`` and ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` (the documented
  override, used by the tests with a local fake), ignores HTTP proxies (IMDS is link-local), and
  gives up after a short timeout: off EC2 (or in a container whose IMDS hop limit is 1) the
  lookup costs at most ``timeout_s`` once per process and returns None, never an error.
- :func:`pod_identity`: the Kubernetes node, pod and namespace from the pod's environment
  (downward API variables such as ``NODE_NAME``, ``POD_NAME``, ``POD_NAMESPACE``; the service
  account's namespace file; ``HOSTNAME``, which is the pod's name unless the spec overrides it).
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_IMDS_ENDPOINT = "http://169.254.169.254"
IMDS_TIMEOUT_S = 1.0
TOKEN_TTL_S = 21600
SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
NODE_NAME_VARS = ("NODE_NAME", "K8S_NODE_NAME", "KUBERNETES_NODE_NAME", "MY_NODE_NAME")
POD_NAME_VARS = ("POD_NAME", "K8S_POD_NAME", "MY_POD_NAME")
POD_NAMESPACE_VARS = ("POD_NAMESPACE", "K8S_POD_NAMESPACE", "MY_POD_NAMESPACE")


@dataclass(frozen=True)
class Ec2Identity:
    """What the instance metadata service says about this instance."""

    instance_id: str
    region: str | None = None
    instance_type: str | None = None
    local_hostname: str | None = None
    source: str = "instance metadata (IMDSv2)"


@dataclass(frozen=True)
class PodIdentity:
    """Where this process runs on Kubernetes (all None off Kubernetes)."""

    node_name: str | None = None
    pod_name: str | None = None
    namespace: str | None = None


_cache: dict[str, Ec2Identity | None] = {}
_lock = threading.Lock()


def imds_endpoint(env: Mapping[str, str] | None = None) -> str | None:
    """The IMDS base URL, or None when the AWS settings disable instance metadata."""
    env = os.environ if env is None else env
    if str(env.get("AWS_EC2_METADATA_DISABLED", "")).strip().lower() == "true":
        return None
    return (env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or DEFAULT_IMDS_ENDPOINT).rstrip("/")


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


def ec2_identity(*, timeout_s: float = IMDS_TIMEOUT_S, env: Mapping[str, str] | None = None,
                 refresh: bool = False) -> Ec2Identity | None:
    """This instance's identity from IMDSv2, or None when there is no metadata service (not on EC2,
    disabled, unreachable, or slower than ``timeout_s`` per request). Cached per endpoint."""
    endpoint = imds_endpoint(env)
    if endpoint is None:
        return None
    with _lock:
        if not refresh and endpoint in _cache:
            return _cache[endpoint]
        ident = _lookup(endpoint, timeout_s)
        _cache[endpoint] = ident
        return ident


def _lookup(endpoint: str, timeout_s: float) -> Ec2Identity | None:
    opener = _opener()
    deadline = time.monotonic() + 4 * timeout_s  # bounded however slowly a server drips bytes

    def left() -> float:
        return max(0.05, min(timeout_s, deadline - time.monotonic()))

    try:
        req = urllib.request.Request(f"{endpoint}/latest/api/token", method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)})
        with opener.open(req, timeout=left()) as r:
            token = r.read(4096).decode("ascii", "replace").strip()
    except (OSError, urllib.error.URLError, ValueError):
        return None  # no IMDS (not EC2), IMDSv2 unreachable (hop limit), or too slow
    if not token:
        return None

    def get(path: str) -> str | None:
        if time.monotonic() >= deadline:
            return None
        req = urllib.request.Request(f"{endpoint}/latest/meta-data/{path}",
                                     headers={"X-aws-ec2-metadata-token": token})
        try:
            with opener.open(req, timeout=left()) as r:
                text = r.read(4096).decode("ascii", "replace").strip()
        except (OSError, urllib.error.URLError, ValueError):
            return None
        return text or None

    instance_id = get("instance-id")
    if not instance_id or not instance_id.startswith("i-"):
        return None
    region = get("placement/region")
    if region is None:  # older metadata versions: the availability zone minus its letter
        az = get("placement/availability-zone")
        region = az[:-1] if az and az[-1].isalpha() else None
    return Ec2Identity(instance_id=instance_id, region=region, instance_type=get("instance-type"),
                       local_hostname=get("local-hostname"))


def pod_identity(env: Mapping[str, str] | None = None, *, sa_namespace_file: str = SA_NAMESPACE_FILE) -> PodIdentity:
    """The node, pod and namespace this process runs in, from the pod's environment."""
    env = os.environ if env is None else env
    if not env.get("KUBERNETES_SERVICE_HOST") and not any(env.get(v) for v in NODE_NAME_VARS + POD_NAME_VARS):
        return PodIdentity()

    def first(names: tuple[str, ...]) -> str | None:
        return next((env[n].strip() for n in names if env.get(n, "").strip()), None)

    namespace = first(POD_NAMESPACE_VARS)
    if namespace is None:
        try:
            namespace = Path(sa_namespace_file).read_text(encoding="utf-8").strip() or None
        except OSError:
            namespace = None
    pod = first(POD_NAME_VARS)
    if pod is None and env.get("KUBERNETES_SERVICE_HOST"):
        pod = (env.get("HOSTNAME") or "").strip() or None
    return PodIdentity(node_name=first(NODE_NAME_VARS), pod_name=pod, namespace=namespace)
