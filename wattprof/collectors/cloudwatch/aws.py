"""boto3 plumbing shared by the CloudWatch collector and exporter: client, region, credentials
check, throttling retries with bounded backoff, one-line error texts. boto3 is imported lazily."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ...errors import CollectorError, InputError
from .identity import ec2_identity

THROTTLE_CODES = frozenset({"Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
                            "TooManyRequestsException", "RequestThrottled", "RequestThrottledException"})
MAX_BACKOFF_S = 20.0


# ---- boto3 plumbing shared with wattprof.exporters.cloudwatch ----------------------------------------

def redact_url(url: str | None) -> str | None:
    """``url`` without any user:password part (never log or record credentials)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def resolve_region(region: str | None, session: Any) -> str | None:
    """The region: given, the session's (profile, AWS_DEFAULT_REGION), AWS_REGION, or on EC2 the
    instance's own region from instance metadata (IMDSv2, short timeout; None off EC2)."""
    found = region or getattr(session, "region_name", None) or os.environ.get("AWS_REGION") or None
    if found:
        return found
    ident = ec2_identity()
    return ident.region if ident else None


def aws_available(*, region: str | None = None, profile: str | None = None) -> tuple[bool, str]:
    """Whether boto3 is importable and a region and credentials resolve (says which is missing).

    The region is checked first (on EC2 it comes from instance metadata when nothing else sets it);
    without one nothing is looked up further."""
    try:
        import boto3
        import botocore.exceptions
    except ImportError:
        return False, "boto3 is not installed (pip install 'wattprof[aws]')"
    try:
        session = boto3.Session(profile_name=profile)
        reg = resolve_region(region, session)
    except botocore.exceptions.ProfileNotFound:
        return False, f"AWS profile {profile!r} not found"
    except botocore.exceptions.BotoCoreError as e:
        return False, f"AWS configuration unreadable ({type(e).__name__})"
    if not reg:
        return False, "no AWS region: pass region=REGION, or set AWS_REGION / AWS_DEFAULT_REGION or a profile region (not on EC2: no instance metadata)"
    try:
        creds = session.get_credentials()
    except botocore.exceptions.BotoCoreError as e:
        return False, f"region {reg}; AWS credentials could not be resolved ({type(e).__name__})"
    if creds is None:
        return False, (f"region {reg}; no AWS credentials (environment, shared credentials/config file, SSO, "
                       "container or instance role)")
    return True, f"region {reg}; credentials from {getattr(creds, 'method', 'the default chain')}"


def make_client(*, region: str | None = None, endpoint_url: str | None = None, profile: str | None = None,
                client_factory: Callable[..., Any] | None = None, region_hint: str = "region=REGION") -> Any:
    """A CloudWatch client. ``client_factory`` is called like ``boto3.client`` (tests wrap it)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise CollectorError("boto3 is not installed (pip install 'wattprof[aws]')") from None
    from ... import __version__

    # botocore's own retries stay small: throttling is retried (with backoff) by call_with_retry.
    config = Config(retries={"mode": "standard", "total_max_attempts": 2},
                    user_agent_extra=f"wattprof/{__version__}")
    kwargs: dict[str, Any] = {"config": config}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if client_factory is not None:
        if region:
            kwargs["region_name"] = region
        return client_factory("cloudwatch", **kwargs)
    session = boto3.Session(profile_name=profile)
    reg = resolve_region(region, session)
    if not reg:
        raise InputError(f"no AWS region: pass {region_hint}, or set AWS_REGION / AWS_DEFAULT_REGION")
    return session.client("cloudwatch", region_name=reg, **kwargs)


def is_throttle(err: BaseException) -> bool:
    response = getattr(err, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in THROTTLE_CODES or status == 429


def error_text(err: BaseException) -> str:
    """A one-line description of a botocore error (code and message; never request details)."""
    response = getattr(err, "response", None)
    if isinstance(response, dict) and "Error" in response:
        e = response["Error"]
        return f"{e.get('Code', 'Error')}: {e.get('Message', '')}".strip().rstrip(":")
    return f"{type(err).__name__}: {err}"


@dataclass
class Retry:
    """Bounded exponential backoff with jitter for throttled calls."""

    max_retries: int = 5
    backoff_s: float = 0.5
    sleep: Callable[[float], None] = time.sleep
    retries: int = 0  # how many throttled calls were retried in all

    def delay(self, attempt: int) -> float:
        return min(self.backoff_s * (2 ** attempt), MAX_BACKOFF_S) * (0.5 + random.random() / 2)  # noqa: S311

    def call(self, fn: Callable[[], Any]) -> Any:
        from botocore.exceptions import ClientError

        attempt = 0
        while True:
            try:
                return fn()
            except ClientError as e:
                self._wait_or_raise(e, attempt)
                attempt += 1

    def _wait_or_raise(self, e: Exception, attempt: int) -> None:
        """Before retrying a throttled call: back off; ``e`` is raised again when it is not
        throttling or the retries are spent."""
        if not is_throttle(e) or attempt >= self.max_retries:
            raise e
        self.sleep(self.delay(attempt))
        self.retries += 1

    def pages(self, client: Any, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every page of a paginated operation (botocore's paginator); a throttled page is retried
        from the last good page's NextToken."""
        from botocore.exceptions import ClientError
        from botocore.paginate import TokenEncoder

        token: str | None = None
        attempt = 0
        while True:
            config = {"StartingToken": token} if token else {}
            it = iter(client.get_paginator(operation).paginate(**kwargs, PaginationConfig=config))
            while True:
                try:
                    page = next(it)
                except StopIteration:
                    return
                except ClientError as e:
                    self._wait_or_raise(e, attempt)
                    attempt += 1
                    break  # restart the paginator from `token`
                attempt = 0
                yield page
                next_token = page.get("NextToken")
                if next_token:
                    token = TokenEncoder().encode({"NextToken": next_token})


