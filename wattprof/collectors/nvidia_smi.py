"""NVIDIA GPUs through the ``nvidia-smi`` command, for machines where NVML cannot be loaded into
the process (containers with only the binary, locked-down images) or to compare with NVML.

One long-lived ``nvidia-smi --query-gpu=FIELDS --format=csv,noheader,nounits -lms N`` process
(spawning nvidia-smi costs 10-20 ms: never one process per sample; REFERENCE.md), read line by
line by a thread and parsed with the shared :class:`~wattprof.formats.nvidia_smi_csv.LineParser`
(the one ``wattprof import`` uses). ``read()`` returns the samples that arrived since the last
call, whatever the recorder's interval.

Fields: ``power.draw`` (on Ampere and newer the trailing 1 s average -> ``power_avg_w``) and
``power.draw.instant`` (-> ``power_w``) where this driver knows it, utilisation, memory used, SM
clock, temperature, clock-event reasons and the enforced power limit. Which fields the driver
knows is read once from ``nvidia-smi --help-query-gpu`` at open: an unknown field makes
nvidia-smi refuse the whole query. There is no energy counter among the query fields.

Timestamps: by default each line is stamped on arrival with the collector's clock
(``stamp=arrival``). nvidia-smi's own ``timestamp`` is local time without a zone at 1 ms
resolution: converting it needs the zone (and is ambiguous around DST changes), and it would not
follow an injected clock; arrival is on the same clock as the recorder and step marks, a pipe
adds well under a millisecond, and nvidia-smi writes each line as it is produced. The first lines'
lag behind nvidia-smi's own timestamp is checked: over a second (output held back, or a zone
mismatch) is reported once as an event. ``stamp=nvidia-smi`` uses nvidia-smi's timestamp,
read in this machine's current UTC offset.

The process is run by :mod:`wattprof.collectors.streaming`: when nvidia-smi exits it is restarted
after 0.5 s, doubling up to 30 s while it keeps dying (back to 0.5 s after a run of 10 s or more).
Each exit is a ``collector_restart`` event ("nvidia-smi exited (code X); restarting in Y s"); a
line that does not parse is a ``collector_bad_output`` event, a lag of the lines behind their own
timestamps a ``timestamp_lag`` event. ``read()`` never raises for them.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import subprocess
import time
from typing import Any

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import CollectorError, InputError
from .base import BAD_OUTPUT, TIMESTAMP_LAG
from .streaming import StreamingCollector, describe_exit, find_executable

__all__ = ["NvidiaSmiCollector", "choose_fields", "describe_exit", "find_executable", "parse_help_query_gpu"]

#: One-shot commands (-L, --help-query-gpu, the device query) are given this long.
COMMAND_TIMEOUT_S = 15.0


# --- the collector ---------------------------------------------------------------------------------

#: (wanted field, alternatives older drivers may know it as), in query order.
WANTED_FIELDS: tuple[tuple[str, ...], ...] = (
    ("timestamp",), ("index",), ("uuid",), ("name",),
    ("power.draw",), ("power.draw.instant",),
    ("utilization.gpu",), ("utilization.memory",), ("memory.used",), ("clocks.sm",), ("temperature.gpu",),
    ("clocks_event_reasons.active", "clocks_throttle_reasons.active"),
    ("enforced.power.limit",),
)
REQUIRED_FIELDS = ("timestamp", "index", "power.draw")
#: Without a usable --help-query-gpu: fields every driver of the last decade knows.
FALLBACK_FIELDS = ("timestamp", "index", "uuid", "name", "power.draw", "utilization.gpu", "utilization.memory",
                   "memory.used", "clocks.sm", "temperature.gpu", "clocks_throttle_reasons.active",
                   "enforced.power.limit")
_HELP_FIELD_RE = re.compile(r'^"([^"]+)"(?:\s+or\s+"([^"]+)")?')


def parse_help_query_gpu(text: str) -> set[str]:
    """Field names (and their aliases) from ``nvidia-smi --help-query-gpu``."""
    out: set[str] = set()
    for line in text.splitlines():
        m = _HELP_FIELD_RE.match(line.strip())
        if m:
            out.update(x for x in m.groups() if x)
    return out


def choose_fields(known: set[str] | None) -> tuple[list[str], list[str]]:
    """(fields to query, wanted fields this driver lacks); ``known=None``: help was unreadable."""
    if known is None:
        return list(FALLBACK_FIELDS), ["power.draw.instant (nvidia-smi --help-query-gpu unreadable)"]
    fields, missing = [], []
    for options in WANTED_FIELDS:
        hit = next((f for f in options if f in known), None)
        if hit is None:
            missing.append(options[0])
        else:
            fields.append(hit)
    lacking = [f for f in REQUIRED_FIELDS if f not in fields]
    if lacking:
        raise CollectorError(f"nvidia-smi does not know the field(s) {', '.join(lacking)} "
                             "(nvidia-smi --help-query-gpu); it is too old for this collector")
    return fields, missing


def local_utc_offset_h() -> float:
    return time.localtime().tm_gmtoff / 3600.0


class NvidiaSmiCollector(StreamingCollector):
    """``nvidia-smi[:interval_ms=100,executable=PATH,stamp=arrival|nvidia-smi]``."""

    name = "nvidia-smi"
    metrics = ("power_w", "power_avg_w", "power_limit_w", "util_pct", "mem_util_pct", "mem_used_bytes",
               "sm_clock_mhz", "temp_c", "throttle_reasons")

    #: Lines whose arrival lag is checked against nvidia-smi's own timestamp.
    LAG_CHECK_LINES = 10
    LAG_WARN_S = 1.0

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, interval_ms: int = 100, executable: str = "nvidia-smi",
                 stamp: str = "arrival") -> None:
        super().__init__(clock=clock)
        if isinstance(interval_ms, bool) or not isinstance(interval_ms, int | float) or interval_ms < 1 \
                or interval_ms != int(interval_ms):
            raise InputError(f"nvidia-smi: interval_ms must be a whole number of milliseconds >= 1, not {interval_ms!r}")
        if stamp not in ("arrival", "nvidia-smi"):
            raise InputError(f"nvidia-smi: stamp must be 'arrival' or 'nvidia-smi', not {stamp!r}")
        self.interval_ms = int(interval_ms)
        self.executable = str(executable)
        self.stamp = stamp
        self.fields: list[str] = []
        self.missing_fields: list[str] = []
        self._path: str | None = None
        self._parser: Any = None
        self._devices: set[str] = set()
        self._bad_lines = 0
        self._lags: list[float] = []

    def options(self) -> dict[str, Any]:
        return {"interval_ms": self.interval_ms, "executable": self._path or self.executable, "stamp": self.stamp,
                "fields": self.fields}

    # --- one-shot commands ---------------------------------------------------------------------------
    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert self._path is not None
        try:
            return subprocess.run([self._path, *args], capture_output=True, text=True,  # noqa: S603
                                  timeout=COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise CollectorError(f"`nvidia-smi {' '.join(args)}` did not answer in {COMMAND_TIMEOUT_S:g} s") from None
        except OSError as e:
            raise CollectorError(f"could not run {self._path}: {e}") from None

    def _resolve(self) -> str | None:
        self._path = find_executable(self.executable)
        return self._path

    def available(self) -> tuple[bool, str]:
        if self._resolve() is None:
            where = "not found on PATH" if os.sep not in self.executable else "not an executable file"
            return False, f"{self.executable} {where} (NVIDIA driver utilities not installed)"
        try:
            p = self._run("-L")
        except CollectorError as e:
            return False, str(e)
        gpus = [ln for ln in p.stdout.splitlines() if ln.startswith("GPU ")]
        if p.returncode != 0 or not gpus:
            said = (p.stdout + p.stderr).strip().splitlines()
            return False, (f"`nvidia-smi -L` lists no GPU (exit {p.returncode}"
                           f"{': ' + said[0] if said else ''})")
        return True, f"{len(gpus)} GPU(s) via {self._path} (nvidia-smi -L)"

    def _known_fields(self) -> set[str] | None:
        p = self._run("--help-query-gpu")
        known = parse_help_query_gpu(p.stdout) if p.returncode == 0 else set()
        return known or None

    def _query_devices(self) -> list[dict[str, Any]]:
        fields = [f for f in ("index", "uuid", "name", "enforced.power.limit") if f in self.fields]
        p = self._run(f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits")
        if p.returncode != 0:
            said = (p.stderr or p.stdout).strip().splitlines()
            raise CollectorError(f"`nvidia-smi --query-gpu` failed (exit {p.returncode}"
                                 f"{': ' + said[0] if said else ''})")
        out = []
        for line in p.stdout.splitlines():
            values = [v.strip() for v in line.split(",")]
            if len(values) != len(fields) or not values[0].isdigit():
                continue
            row = dict(zip(fields, values, strict=True))
            info: dict[str, Any] = {"index": int(row["index"]), "uuid": row.get("uuid"), "name": row.get("name")}
            try:
                limit = float(row.get("enforced.power.limit", "nan"))
            except ValueError:
                limit = math.nan
            info["power_limit_w"] = None if math.isnan(limit) else limit
            out.append(info)
        return out

    # --- lifecycle -------------------------------------------------------------------------------------
    def open(self) -> dict[str, dict]:
        from ..formats.nvidia_smi_csv import LineParser
        from .nvml import parse_visible_devices

        if self._resolve() is None:
            raise CollectorError(f"{self.executable} not found on PATH")
        self.fields, self.missing_fields = choose_fields(self._known_fields())
        gpus = self._query_devices()
        if not gpus:
            raise CollectorError("nvidia-smi lists no GPU")
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        by_index = {g["index"]: g for g in gpus}
        order = sorted(by_index)
        selected = parse_visible_devices(env, [by_index[i].get("uuid") or "" for i in order])
        mig = any(is_mig for _, is_mig in selected)
        chosen: list[tuple[int, int | None]]
        if mig:  # nvidia-smi cannot map a MIG slice to its parent here: record every GPU
            chosen = [(i, None) for i in order]
        else:
            chosen = [(order[pos], cuda) for cuda, (pos, _) in enumerate(selected)]
        has_instant = "power.draw.instant" in self.fields
        source = ("measured: nvidia-smi power.draw (1 s average)"
                  + (" / power.draw.instant" if has_instant else "; power.draw.instant not known to this driver"))
        devices: dict[str, dict] = {}
        for idx, cuda in chosen:
            g = by_index[idx]
            info: dict[str, Any] = {"kind": "gpu", "vendor": "nvidia", "name": g["name"], "uuid": g["uuid"],
                                    "nvml_index": idx, "power_limit_w": g["power_limit_w"],
                                    "power_source": source, "collector": self.name,
                                    "timestamps": ("stamped on arrival" if self.stamp == "arrival"
                                                   else "nvidia-smi's own timestamp (local time, 1 ms)")}
            if cuda is not None:
                info["cuda_index"] = cuda
            if mig:
                info["note"] = "CUDA_VISIBLE_DEVICES names MIG slices: every GPU is recorded"
            devices[f"gpu:{idx}"] = info
        self._devices = set(devices)
        if not devices:
            return {}
        self._parser = LineParser(self.fields, local_utc_offset_h(), source="nvidia-smi")
        argv = [self._path or self.executable, f"--query-gpu={','.join(self.fields)}",
                "--format=csv,noheader,nounits", "-lms", str(self.interval_ms)]
        if env is not None and not mig and len(devices) < len(gpus):
            argv += ["-i", ",".join(str(i) for i, _ in chosen)]
        try:
            self.start_process("nvidia-smi", argv)
        except OSError as e:
            raise CollectorError(f"could not start {argv[0]}: {e}") from None
        return devices

    def on_line(self, line: str, t_arrival: float) -> None:
        try:
            row = self._parser.parse(line)
        except InputError as e:
            self._bad_lines += 1
            if self._bad_lines <= 10:
                self.emit(BAD_OUTPUT, f"nvidia-smi printed a line that does not parse ({e})", t=t_arrival,
                          bad_lines=self._bad_lines)
            return
        if row is None or row["device"] not in self._devices:
            return
        t_own = row["t"]
        if self.stamp == "arrival":
            row["t"] = t_arrival
            if self.clock is SYSTEM_CLOCK and len(self._lags) < self.LAG_CHECK_LINES:
                self._check_lag(t_arrival - t_own)
        self.push([row])

    def _check_lag(self, lag: float) -> None:
        self._lags.append(lag)
        if len(self._lags) == self.LAG_CHECK_LINES:
            median = statistics.median(self._lags)
            if abs(median) > self.LAG_WARN_S + self.interval_ms / 1000.0:
                self.emit(TIMESTAMP_LAG,
                          f"nvidia-smi lines arrive {median:+.1f} s from their own timestamps (output held back, "
                          "or a time-zone mismatch); samples are stamped on arrival (stamp=nvidia-smi uses "
                          "nvidia-smi's timestamps)", lag_s=median)
