"""The result JSON of ``vllm bench serve --save-result [--save-detailed]`` as wattprof steps.

Keys used (REFERENCE.md, "Integrations"): ``date`` (``%Y%m%d-%H%M%S``, local time of the
benchmark machine, stamped once the benchmark has returned), ``duration`` (s, on
``time.perf_counter``), ``completed``, ``failed`` (optional), ``total_input_tokens``,
``total_output_tokens``; with ``--save-detailed`` also per-request ``start_times``
(``time.perf_counter()`` of the client, *not* the wall clock), ``input_lens``, ``output_lens``,
``ttfts`` (s) and ``itls`` (a list of inter-token latencies in s per request) and ``errors``.

The clock problem. ``start_times`` are on an arbitrary clock; the only wall-clock anchor is
``date``, which has 1 s resolution, is local time (``utc_offset_h`` names the zone) and is taken
*after* the run. :meth:`VllmBench.coarse_offset` turns it into a perf_counter -> Unix-seconds
offset good to about +/-1 s when ``date`` was stamped within a second of the last request's end
(vLLM stamps it once the benchmark coroutine has returned: after computing and printing metrics;
anything slower in between adds to the error, see :attr:`VllmBench.offset_bounds`). :func:`wattprof.analysis.clock_offset.refine_offset` sharpens it against GPU
activity, searching :meth:`VllmBench.offset_bounds`.
"""

from __future__ import annotations

import calendar
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from . import finite_number as _finite
from .steps_jsonl import steps_frame

DATE_FORMAT = "%Y%m%d-%H%M%S"
#: Keys every vLLM bench result has (``sniff`` requires them all).
SIGNATURE_KEYS: tuple[str, ...] = ("date", "duration", "completed", "total_output_tokens")
REQUIRED_KEYS: tuple[str, ...] = ("date", "duration", "completed", "total_input_tokens", "total_output_tokens")
#: Per-request arrays written by ``--save-detailed`` (``start_times`` in recent vLLM versions).
DETAIL_KEYS: tuple[str, ...] = ("start_times", "input_lens", "output_lens", "ttfts", "itls")
DEFAULT_LABEL = "serve"
#: ``duration`` may exceed the span of the requests by this much (client start-up, the last
#: ``gather``) before the coarse offset's +/-1 s no longer holds and a caveat says so.
SLACK_TOLERANCE_S = 0.5


@dataclass
class VllmBench:
    """One parsed ``vllm bench serve`` result. Per-request lists are empty unless ``detailed``."""

    path: str
    detailed: bool
    #: ``date`` as Unix seconds: the start of the second (local time at ``utc_offset_h``) in
    #: which the benchmark stamped its result, i.e. after the run ended. True stamp is in
    #: ``[end_wall, end_wall + 1)``.
    end_wall: float
    duration: float
    completed: int
    total_input_tokens: int
    total_output_tokens: int
    failed: int = 0
    utc_offset_h: float = 0.0
    #: Per request (failed requests dropped), on the client's ``time.perf_counter`` clock.
    start_times: list[float] = field(default_factory=list)
    input_lens: list[int] = field(default_factory=list)
    output_lens: list[int] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    itls: list[list[float]] = field(default_factory=list)
    #: Index of each kept request in the file's arrays.
    request_index: list[int] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)

    # --- per-request times (perf_counter) -----------------------------------------------
    @property
    def latencies(self) -> np.ndarray:
        """End-to-end latency per request: ``ttft + sum(itls)`` (s)."""
        return np.array([t + math.fsum(i) for t, i in zip(self.ttfts, self.itls, strict=True)], dtype=float)

    @property
    def end_times(self) -> np.ndarray:
        """perf_counter time of each request's last token."""
        return np.asarray(self.start_times, dtype=float) + self.latencies

    @property
    def slack_s(self) -> float:
        """``first start + duration - last end``: benchmark time with no request in flight.

        vLLM starts its clock just before issuing the first request and stops it when the last
        finishes, so this is about 0; a large value means ``duration`` (and possibly the wait
        before ``date`` was stamped) includes time without requests."""
        if not self.detailed:
            return float("nan")
        return float(min(self.start_times) + self.duration - self.end_times.max())

    # --- clock alignment ----------------------------------------------------------------
    @property
    def coarse_offset(self) -> float:
        """Offset (s) to add to ``start_times`` to get Unix seconds: ``end_wall - last end``.

        Assumes (1) ``utc_offset_h`` is the zone the benchmark machine stamped ``date`` in,
        (2) ``date`` was stamped ``delay`` seconds after the last request finished with
        ``0 <= delay < 1 s`` (vLLM stamps right after the benchmark returns), (3) perf_counter
        and the wall clock ran at the same rate during the run (no NTP step; ppm drift).
        With ``date`` truncated to the second (true stamp ``end_wall + frac``, ``0 <= frac < 1``)
        the estimate's error is ``delay - frac``, inside (-1 s, +1 s). A longer delay makes the
        offset too late by that much (true offset still inside :attr:`offset_bounds`)."""
        if not self.detailed:
            raise ValueError("coarse_offset needs per-request start_times (--save-detailed)")
        return float(self.end_wall - self.end_times.max())

    @property
    def offset_bounds(self) -> tuple[float, float]:
        """Interval that must hold the true offset, assuming only that ``date`` was stamped
        less than 1 s after the benchmark's clock stopped.

        The benchmark's clock stopped at perf time ``B`` with ``last end <= B`` and
        ``B <= first start + duration`` (the clock started before the first request), so the
        offset lies in ``(end_wall - 1 - (first start + duration), end_wall + 1 - last end)``:
        2 s wide for a normal vLLM run, wider by :attr:`slack_s` otherwise. Search this
        interval when refining."""
        if not self.detailed:
            raise ValueError("offset_bounds needs per-request start_times (--save-detailed)")
        lo = self.end_wall - 1.0 - (min(self.start_times) + self.duration)
        hi = self.end_wall + 1.0 - float(self.end_times.max())
        return (float(min(lo, hi - 2.0)), float(hi))

    @property
    def coarse_uncertainty(self) -> float:
        """Half-width that covers :attr:`offset_bounds` from :attr:`coarse_offset` (>= 1 s)."""
        lo, hi = self.offset_bounds
        c = self.coarse_offset
        return float(max(1.0, c - lo, hi - c))

    # --- steps --------------------------------------------------------------------------
    def steps(self, offset: float | None = None, *, label: str = DEFAULT_LABEL) -> pd.DataFrame:
        """The result as a steps DataFrame (``steps_jsonl.steps_frame``), wall-clock seconds.

        Detailed: one step per (successful) request, ``t_start = start_time + offset``,
        ``t_end = t_start + ttft + sum(itls)``, ``tokens = output_len``, extra columns
        ``prompt_tokens``, ``output_tokens``, ``t_first_token``; ``step`` is the request's
        index in the file. ``offset`` defaults to :attr:`coarse_offset` (+/-1 s, see there).

        Not detailed: one window ``[end_wall - duration, end_wall]`` with ``tokens =
        total_output_tokens``, ``prompt_tokens = total_input_tokens``, ``requests = completed``;
        ``offset`` must be None (the window is already on the wall clock, to about 1 s).
        """
        if not self.detailed:
            if offset is not None:
                raise ValueError("offset applies only to detailed results (per-request start_times)")
            return steps_frame([{
                "step": 0,
                "t_start": self.end_wall - self.duration,
                "t_end": self.end_wall,
                "tokens": float(self.total_output_tokens),
                "label": label,
                "prompt_tokens": self.total_input_tokens,
                "output_tokens": self.total_output_tokens,
                "requests": self.completed,
            }])
        off = self.coarse_offset if offset is None else float(offset)
        if not math.isfinite(off):
            raise ValueError(f"offset must be finite, got {offset!r}")
        starts = np.asarray(self.start_times, dtype=float) + off
        ends = starts + self.latencies
        first = starts + np.asarray(self.ttfts, dtype=float)
        rows = [
            {
                "step": int(i),
                "t_start": float(s),
                "t_end": float(e),
                "tokens": float(o),
                "label": label,
                "prompt_tokens": int(p),
                "output_tokens": int(o),
                "t_first_token": float(f),
            }
            for i, s, e, f, p, o in zip(self.request_index, starts, ends, first, self.input_lens,
                                        self.output_lens, strict=True)
        ]
        if not rows:
            raise ValueError("no successful requests to turn into steps")
        return steps_frame(rows)


# --- reading ----------------------------------------------------------------------------
def sniff(obj_or_path: object) -> bool:
    """True if ``obj_or_path`` (a parsed JSON value, or a path to a JSON file) looks like a
    ``vllm bench serve --save-result`` result: an object with ``date``, ``duration``,
    ``completed`` and ``total_output_tokens``. Never raises."""
    obj = obj_or_path
    if isinstance(obj_or_path, (str, Path)):
        p = Path(obj_or_path)
        try:
            if not p.is_file():
                return False
            with p.open("rb") as f:
                head = f.read(4096).decode("utf-8-sig", errors="ignore").lstrip()
            if not head.startswith("{"):
                return False
            obj = json.loads(p.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return False
    return isinstance(obj, dict) and all(k in obj for k in SIGNATURE_KEYS)


def _load(p: Path) -> object:
    if not p.is_file():
        raise InputError("file not found (expected a vLLM bench result JSON)", path=str(p))
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text (expected a vLLM bench result JSON)", path=str(p)) from None
    try:
        return json.loads(text)
    except RecursionError:
        raise InputError("JSON nested too deeply; expected a vLLM bench result", path=str(p)) from None
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e.msg}, column {e.colno}); expected a vLLM bench result",
                         path=str(p), line=e.lineno) from None




#: Largest values read (beyond them a result is damaged, and arithmetic on them overflows): seconds
#: of a duration or latency (a year), perf_counter stamps (300 years of uptime), token counts.
MAX_SECONDS = 3.2e7
MAX_PERF_COUNTER_S = 1e10
MAX_TOKENS = 1e15
_LIMITS = {"duration": MAX_SECONDS, "start_times": MAX_PERF_COUNTER_S, "ttfts": MAX_SECONDS, "itls": MAX_SECONDS}


def _limit(key: str) -> float:
    return _LIMITS.get(key.split("[")[0], MAX_TOKENS)


def _num(obj: dict, key: str, path: str, *, integer: bool = False) -> float:
    v = obj[key]
    if not _finite(v) or v < 0 or v > _limit(key):
        raise InputError(f"'{key}' is {v!r}, expected a finite number >= 0 and <= {_limit(key):g}", path=path)
    if integer and v != int(v):
        raise InputError(f"'{key}' is {v!r}, expected a whole number", path=path)
    return float(v)


def _num_list(v: object, key: str, path: str, *, integer: bool = False) -> list[float]:
    if not isinstance(v, list):
        raise InputError(f"'{key}' is {type(v).__name__}, expected a list of numbers", path=path)
    for i, x in enumerate(v):
        if not _finite(x) or abs(x) > _limit(key) or (
                integer and (x < 0 or x != int(x))):
            want = "a whole number >= 0" if integer else "a finite number"
            raise InputError(f"'{key}'[{i}] is {x!r}, expected {want} of at most {_limit(key):g}", path=path)
    return [float(x) for x in v]


def read_vllm_bench(path: str | Path, *, utc_offset_h: float = 0.0) -> VllmBench:
    """Parse a ``vllm bench serve --save-result`` JSON. ``utc_offset_h``: the zone ``date`` was
    written in, hours east of UTC (``datetime.now()`` on the benchmark machine; 0 for UTC)."""
    p = Path(path)
    ps = str(p)
    if not math.isfinite(utc_offset_h) or abs(utc_offset_h) > 14:
        raise ValueError(f"utc_offset_h must be within +/-14 h, got {utc_offset_h!r}")
    obj = _load(p)
    if not isinstance(obj, dict):
        raise InputError(f"top level is a JSON {type(obj).__name__}, expected an object "
                         f"(a vLLM bench result with keys {', '.join(REQUIRED_KEYS)})", path=ps)
    bench, date = _summary(obj, ps, utc_offset_h)
    clock = (f"clock: the run window comes from 'date' ({date}, read as UTC{utc_offset_h:+g} h), which has "
             "1 s resolution and was stamped after the run ended; its edges are uncertain by about 1 s "
             "(more if the result was written long after the run)")
    if "start_times" not in obj:
        present = [k for k in DETAIL_KEYS if k in obj]
        if present:
            bench.caveats.append("per-request arrays present but no 'start_times' (older vLLM): requests "
                                 "cannot be placed in time; using the whole-run window")
        bench.caveats.append(clock)
        return bench
    dropped = _requests(obj, bench, ps)
    if not bench.start_times:
        bench.caveats.append("no successful request in the per-request lists; using the whole-run window")
        bench.caveats.append(clock)
        return bench
    bench.detailed = True
    if dropped:
        bench.caveats.append(f"{dropped} failed request(s) (non-empty 'errors') left out")
    if sum(bench.output_lens) != bench.total_output_tokens:
        bench.caveats.append(f"sum of output_lens ({sum(bench.output_lens)}) differs from total_output_tokens "
                             f"({bench.total_output_tokens}); per-request tokens are used")
    _clock_caveats(bench, date, utc_offset_h)
    return bench


def _summary(obj: dict[str, Any], ps: str, utc_offset_h: float) -> tuple[VllmBench, str]:
    """The whole-run figures (``date``, ``duration``, totals), checked; and ``date`` as written."""
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise InputError(f"not a vLLM bench result: missing key(s) {', '.join(repr(k) for k in missing)} "
                         f"(expected {', '.join(REQUIRED_KEYS)})", path=ps)
    date = obj["date"]
    try:
        if not isinstance(date, str):
            raise ValueError
        end_wall = calendar.timegm(time.strptime(date, DATE_FORMAT)) - utc_offset_h * 3600.0
    except ValueError:
        raise InputError(f"'date' is {date!r}, expected local time as %Y%m%d-%H%M%S "
                         "(e.g. '20250101-120000')", path=ps) from None
    duration = _num(obj, "duration", ps)
    completed = int(_num(obj, "completed", ps, integer=True))
    tot_in = int(_num(obj, "total_input_tokens", ps, integer=True))
    tot_out = int(_num(obj, "total_output_tokens", ps, integer=True))
    failed = int(_num(obj, "failed", ps, integer=True)) if "failed" in obj else 0
    bench = VllmBench(path=ps, detailed=False, end_wall=float(end_wall), duration=duration,
                      completed=completed, total_input_tokens=tot_in, total_output_tokens=tot_out,
                      failed=failed, utc_offset_h=float(utc_offset_h))
    return bench, date


def _requests(obj: dict, bench: VllmBench, ps: str) -> int:
    """Check the per-request lists and keep the successful requests in ``bench``; returns how many
    failed requests were left out."""
    missing = [k for k in DETAIL_KEYS if k not in obj]
    if missing:
        raise InputError(f"detailed vLLM result ('start_times' present) lacks {', '.join(repr(k) for k in missing)}",
                         path=ps)
    starts = _num_list(obj["start_times"], "start_times", ps)
    in_lens = _num_list(obj["input_lens"], "input_lens", ps, integer=True)
    out_lens = _num_list(obj["output_lens"], "output_lens", ps, integer=True)
    ttfts_raw = obj["ttfts"]
    itls_raw = obj["itls"]
    if not isinstance(itls_raw, list):
        raise InputError(f"'itls' is {type(itls_raw).__name__}, expected a list of lists of seconds", path=ps)
    if not isinstance(ttfts_raw, list):
        raise InputError(f"'ttfts' is {type(ttfts_raw).__name__}, expected a list of seconds", path=ps)
    errors_raw = obj.get("errors")
    lengths = {"start_times": len(starts), "input_lens": len(in_lens), "output_lens": len(out_lens),
               "ttfts": len(ttfts_raw), "itls": len(itls_raw)}
    if isinstance(errors_raw, list):
        lengths["errors"] = len(errors_raw)
    if len(set(lengths.values())) != 1:
        raise InputError("per-request lists have different lengths: "
                         + ", ".join(f"{k}={n}" for k, n in lengths.items()), path=ps)
    n = len(starts)
    completed, failed = bench.completed, bench.failed
    if n not in (completed, completed + failed):
        raise InputError(f"per-request lists have {n} entries but completed={completed}, failed={failed}",
                         path=ps)
    dropped = 0
    for i in range(n):
        err = errors_raw[i] if isinstance(errors_raw, list) else ""
        if err:
            dropped += 1
            continue
        ttft = ttfts_raw[i]
        if not _finite(ttft) or ttft < 0 or ttft > MAX_SECONDS:
            raise InputError(f"'ttfts'[{i}] is {ttft!r}, expected a finite number >= 0 and <= {MAX_SECONDS:g}",
                             path=ps)
        itl = _num_list(itls_raw[i], f"itls[{i}]", ps)
        if any(x < 0 for x in itl):
            raise InputError(f"'itls'[{i}] has a negative latency", path=ps)
        bench.start_times.append(starts[i])
        bench.input_lens.append(int(in_lens[i]))
        bench.output_lens.append(int(out_lens[i]))
        bench.ttfts.append(float(ttft))
        bench.itls.append(itl)
        bench.request_index.append(i)
    return dropped


def _clock_caveats(bench: VllmBench, date: str, utc_offset_h: float) -> None:
    """How far the requests' placement on the wall clock can be trusted, and overlap."""
    slack = bench.slack_s
    bench.caveats.append(
        f"clock: request start_times are on the client's perf_counter; placed on the wall clock with the "
        f"offset from 'date' ({date}, UTC{utc_offset_h:+g} h, 1 s resolution, stamped after the run): "
        f"error within +/-1 s if 'date' was stamped less than 1 s after the last request ended; "
        f"refine it against GPU activity (wattprof.analysis.clock_offset.refine_offset)")
    if slack > SLACK_TOLERANCE_S:
        bench.caveats.append(
            f"clock: 'duration' exceeds the span of the requests by {slack:.2f} s (time without requests "
            f"inside the benchmark), so 'date' may have been stamped up to {slack + 1:.2f} s after the last "
            f"request: the coarse offset may be up to that much too late; the true offset lies in a "
            f"{bench.offset_bounds[1] - bench.offset_bounds[0]:.2f} s wide window")
    elif slack < -SLACK_TOLERANCE_S:
        bench.caveats.append(
            f"clock: the requests span {-slack:.2f} s more than 'duration': start_times and duration may not "
            "share a clock; the coarse offset is doubtful")
    inflight = _max_in_flight(np.asarray(bench.start_times), bench.end_times)
    if inflight > 1:
        bench.caveats.append(f"requests overlap (up to {inflight} in flight): per-request energy shares "
                             "the same joules; sum energy over the run window, not over requests")


def _max_in_flight(starts: np.ndarray, ends: np.ndarray) -> int:
    t = np.concatenate([starts, ends])
    d = np.concatenate([np.ones(len(starts)), -np.ones(len(ends))])
    order = np.lexsort((d, t))  # at equal times, ends (-1) before starts
    return int(np.cumsum(d[order]).max()) if len(t) else 0
