"""Amazon CloudWatch: read GPU metrics the CloudWatch agent or Container Insights publish back into
a run (:class:`CloudWatchCollector`), and the boto3 plumbing the exporter shares.

Modules, one job each: :mod:`.sources` (publishers, their dimension sets, identity matching, power
semantics), :mod:`.query` (period rules and per-call limits), :mod:`.identity` (IMDSv2, EKS pod
environment), :mod:`.aws` (client, retries, errors), :mod:`.discovery` (which series are this
run's), :mod:`.metric_data` (GetMetricData: probes, periods, paging), :mod:`.buckets` (datapoints
as samples at bucket middles, the run's edges, what is missing), :mod:`.collector` (the
collector: options, open, fetch, device metadata).
"""

from .aws import Retry, aws_available, error_text, is_throttle, make_client, redact_url, resolve_region
from .collector import CloudWatchCollector
from .identity import Ec2Identity, PodIdentity, ec2_identity, pod_identity
from .options import DEFAULT_WAIT_S, CloudWatchOptions, parse_dims
from .query import (
    MAX_POINTS_PER_CALL,
    MAX_QUERIES_PER_CALL,
    RETENTION,
    SUB_MINUTE_PERIODS,
    choose_period,
    plan_calls,
)
from .sources import SOURCES, MetricMap, SourceSpec, agent_power_semantics

__all__ = [
    "CloudWatchOptions", "DEFAULT_WAIT_S", "MAX_POINTS_PER_CALL", "MAX_QUERIES_PER_CALL", "RETENTION", "SOURCES", "SUB_MINUTE_PERIODS",
    "CloudWatchCollector", "Ec2Identity", "MetricMap", "PodIdentity", "Retry", "SourceSpec", "agent_power_semantics",
    "aws_available", "choose_period", "ec2_identity", "error_text", "is_throttle", "make_client", "parse_dims",
    "plan_calls", "pod_identity", "redact_url", "resolve_region",
]
