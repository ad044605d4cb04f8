"""Token counters of a serving engine, scraped from its Prometheus endpoint during the run.

``-c prometheus:url=http://127.0.0.1:8000/metrics,preset=vllm`` (or ``sglang``, ``tgi``), or
explicit metric names for other servers (NVIDIA NIM, ...):
``prometheus:url=...,prompt=NAME,generation=NAME,running=NAME``. Each read scrapes the endpoint
once and turns the counters into rates over the time since the previous scrape:
``prompt_tokens_per_s``, ``output_tokens_per_s`` and the gauge ``requests_running``, for the
device ``serve:<preset or host:port>``. A counter summed over its label sets (several models or
engines) is one figure.

A counter that goes down is a **reset** (the server restarted): as Prometheus' ``rate()`` does,
the tokens since the reset are the counter's new value, and a ``counter_reset`` event says so.
A server that stops answering is a ``server_unreachable`` event (once) and a ``server_back``
event when it answers again; no rate is made up for the gap. Neither is a collector error.

The scrape runs at most every ``every`` seconds (default 1 s, whatever the run's interval) with a
short ``timeout``; the text format is parsed here (Prometheus text exposition 0.0.4 and
OpenMetrics samples), without a client library.
"""

from __future__ import annotations

import math
import re
import urllib.error
import urllib.request
from typing import Any, ClassVar
from urllib.parse import urlparse

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import InputError
from .base import Collector

#: preset -> (prompt token counter, generation token counter, running requests gauge)
PRESETS: dict[str, tuple[str, str, str | None]] = {
    "vllm": ("vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:num_requests_running"),
    "sglang": ("sglang:prompt_tokens_total", "sglang:generation_tokens_total", "sglang:num_running_reqs"),
    # TGI counts tokens in histograms: their _sum is the counter of all tokens
    "tgi": ("tgi_request_input_length_sum", "tgi_request_generated_tokens_sum", "tgi_batch_current_size"),
}
MAX_BODY_BYTES = 16 << 20
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)")


def parse_text(text: str, names: set[str]) -> dict[str, float]:
    """Sum of every sample of each metric in ``names`` (all label sets); absent names are missing."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _LINE.match(line)
        if m is None or m.group(1) not in names:
            continue
        try:
            v = float(m.group(3))
        except ValueError:
            continue
        if math.isfinite(v):
            out[m.group(1)] = out.get(m.group(1), 0.0) + v
    return out


class PrometheusCollector(Collector):
    name = "prometheus"
    metrics: ClassVar[tuple[str, ...]] = ("prompt_tokens_per_s", "output_tokens_per_s", "requests_running")

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, url: str | None = None, preset: str | None = None,
                 prompt: str | None = None, generation: str | None = None, running: str | None = None,
                 every: float = 1.0, timeout: float = 0.5, device: str | None = None) -> None:
        super().__init__(clock=clock)
        if not url:
            raise InputError("collector 'prometheus': url= is required (e.g. prometheus:url=http://127.0.0.1:8000"
                             "/metrics,preset=vllm)")
        u = urlparse(str(url))
        if u.scheme not in ("http", "https") or not u.netloc:
            raise InputError(f"collector 'prometheus': url '{url}' is not an http(s) URL")
        if preset is not None and preset not in PRESETS:
            raise InputError(f"collector 'prometheus': unknown preset '{preset}' (known: {', '.join(PRESETS)}; "
                             "or give prompt=, generation=, running= metric names)")
        p, g, r = PRESETS[preset] if preset else (None, None, None)
        self.prompt, self.generation, self.running = prompt or p, generation or g, running or r
        if not (self.prompt or self.generation):
            raise InputError("collector 'prometheus': give preset=vllm|sglang|tgi or the metric names "
                             "(prompt=, generation=, running=)")
        self.url = str(url)
        self.preset = preset
        self.every = float(every)
        self.timeout = float(timeout)
        self.device = device or f"serve:{preset or u.netloc}"
        self._prev: dict[str, float] = {}
        self._prev_t: float | None = None
        self._next_t = -math.inf
        self._up: bool | None = None

    def options(self) -> dict[str, Any]:
        return {"url": self.url, "preset": self.preset, "prompt": self.prompt, "generation": self.generation,
                "running": self.running, "every": self.every}

    def open(self) -> dict[str, dict]:
        return {self.device: {"kind": "serve", "url": self.url, "preset": self.preset,
                              "metrics": {"prompt_tokens_per_s": self.prompt, "output_tokens_per_s": self.generation,
                                          "requests_running": self.running},
                              "power_source": "none: token counters of a serving engine, no power"}}

    def _scrape(self) -> str | None:
        req = urllib.request.Request(self.url, headers={"Accept": "text/plain;version=0.0.4"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:  # noqa: S310 - user's http(s) URL
                body = r.read(MAX_BODY_BYTES)
        except (urllib.error.URLError, OSError, ValueError) as e:
            if self._up is not False:
                why = getattr(e, "reason", None) or e
                self.emit("server_unreachable", f"prometheus {self.url}: not answering ({why}); "
                          "token rates resume when it answers", device=self.device)
            self._up = False
            return None
        if self._up is False:
            self.emit("server_back", f"prometheus {self.url}: answering again", device=self.device)
        self._up = True
        return body.decode("utf-8", errors="replace")

    def read(self) -> list[dict[str, Any]]:
        now = self.clock.time()
        if now < self._next_t:
            return []
        self._next_t = now + self.every
        text = self._scrape()
        if text is None:  # the next answer's counters cover the gap (a reset there is caught as such)
            return []
        names = {n for n in (self.prompt, self.generation, self.running) if n}
        vals = parse_text(text, names)
        row: dict[str, Any] = {"device": self.device, "t": now}
        if self.running and self.running in vals:
            row["requests_running"] = vals[self.running]
        if self._prev_t is not None and now > self._prev_t:
            dt = now - self._prev_t
            for name, col in ((self.prompt, "prompt_tokens_per_s"), (self.generation, "output_tokens_per_s")):
                if not name or name not in vals or name not in self._prev:
                    continue
                d = vals[name] - self._prev[name]
                if d < 0:
                    self.emit("counter_reset", f"prometheus {self.url}: {name} went from "
                              f"{self._prev[name]:.0f} to {vals[name]:.0f} (server restarted?): counted from zero",
                              device=self.device)
                    d = vals[name]
                row[col] = d / dt
        self._prev = {k: v for k, v in vals.items() if k != self.running}
        self._prev_t = now
        return [row]
