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

When nvidia-smi exits it is restarted after 0.5 s, doubling up to 30 s while it keeps dying
(back to 0.5 s after a run of 10 s or more). Each exit is reported by the next ``read()``
raising :class:`CollectorError` ("nvidia-smi exited (code X); restarting in Y s"), which the
recorder writes as an event; samples already buffered are returned by the read after that.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import CollectorError, InputError, WattprofError
from .base import Collector

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
#: A process that ran this long before exiting restarts the backoff from BACKOFF_START_S.
BACKOFF_RESET_AFTER_S = 10.0
#: close(): SIGTERM, then SIGKILL after this many seconds.
STOP_GRACE_S = 2.0
#: One-shot commands (-L, --help-query-gpu, the device query) are given this long.
COMMAND_TIMEOUT_S = 15.0


def describe_exit(code: int | None) -> str:
    if code is None:
        return "code unknown"
    if code < 0:
        try:
            return f"code {code}, killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"code {code}"
    return f"code {code}"


def find_executable(name: str, *fallbacks: str) -> str | None:
    """``name`` as a path, or looked up on PATH, or the first existing fallback path."""
    if os.sep in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    for f in fallbacks:
        if os.path.isfile(f) and os.access(f, os.X_OK):
            return f
    return None


class LineProcess:
    """A long-lived command whose stdout is read line by line on a thread, restarted when it dies.

    ``on_line(line, t)`` gets each complete line (without the newline) and its arrival time on
    ``clock``. Exits and restarts are kept as messages for :meth:`take_events`. Lines of any
    length are fine (a text stream's ``readline`` has no limit).
    """

    def __init__(self, name: str, argv: Sequence[str], on_line: Callable[[str, float], None], *,
                 clock: Clock = SYSTEM_CLOCK, backoff_start_s: float = BACKOFF_START_S,
                 backoff_max_s: float = BACKOFF_MAX_S, reset_after_s: float = BACKOFF_RESET_AFTER_S,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.on_line = on_line
        self.clock = clock
        self.backoff_start_s = backoff_start_s
        self.backoff_max_s = backoff_max_s
        self.reset_after_s = reset_after_s
        self.env = env
        self.starts = 0
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[bytes] | None = None
        self._events: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        p = self._proc
        return p.pid if p is not None else None

    def start(self) -> None:
        """Spawn the command (an OSError here is the caller's: the collector cannot open)."""
        self._spawn()
        self._thread = threading.Thread(target=self._run, name=f"wattprof-{self.name}", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in _reap()
            try:
                self._proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
                    self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True,
                    encoding="utf-8", errors="replace", env=self.env, start_new_session=True)
            except OSError:
                stderr.close()
                self._proc = None
                raise
            self._stderr = stderr
            self.starts += 1

    def _event(self, message: str) -> None:
        with self._lock:
            self._events.append(message)

    def take_events(self) -> list[str]:
        with self._lock:
            out, self._events = self._events, []
        return out

    def _stderr_tail(self) -> str:
        f = self._stderr
        if f is None:
            return ""
        try:
            f.seek(0)
            text = f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""
        finally:
            f.close()
            self._stderr = None
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return (": " + " / ".join(lines[-3:]))[:400] if lines else ""

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            t = self.clock.time()
            if not line.endswith("\n"):
                break  # cut off: the process died mid-write
            try:
                self.on_line(line.rstrip("\r\n"), t)
            except (WattprofError, ValueError, KeyError, TypeError) as e:
                self._event(f"{self.name}: line not understood ({type(e).__name__}: {e})")
        proc.stdout.close()

    def _run(self) -> None:
        delay = self.backoff_start_s
        while True:
            proc = self._proc
            started = time.monotonic()
            if proc is not None:
                self._pump(proc)
                code = proc.wait()
                why = f"{self.name} exited ({describe_exit(code)}{self._stderr_tail()})"
                if time.monotonic() - started >= self.reset_after_s:
                    delay = self.backoff_start_s
            else:
                why = f"{self.name} could not be restarted"
            if self._stop.is_set():
                return
            self._event(f"{why}; restarting in {delay:g} s")
            if self._stop.wait(delay):
                return
            try:
                self._spawn()
            except OSError as e:
                self._proc = None
                self._event(f"{self.name} could not be started: {e}")
            delay = min(delay * 2, self.backoff_max_s)

    def close(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop: SIGTERM, wait ``grace_s``, SIGKILL; join the reader. Safe to call twice."""
        with self._lock:
            self._stop.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=grace_s + 5)
            self._thread = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


class EventSurfacing:
    """Events (process exits, stream errors) become :class:`CollectorError` from the next ``read()``.

    The recorder records an exception from ``read()`` as an event and carries on. A recorder that
    calls :meth:`drain_events` instead takes the messages directly and ``read()`` stops raising.
    """

    _events_drained_by_caller = False
    _lock: threading.Lock
    _events: list[str]
    _proc: LineProcess | None

    def _pending_events(self) -> list[str]:
        """This collector's own messages, after those of its child process (if any)."""
        with self._lock:
            events, self._events = self._events, []
        if self._proc is not None:
            events = self._proc.take_events() + events
        return events

    def drain_events(self) -> list[str]:
        """Messages since the last call (a recorder calling this gets them instead of exceptions)."""
        self._events_drained_by_caller = True
        return self._pending_events()

    def _raise_pending(self) -> None:
        if self._events_drained_by_caller:
            return
        events = self._pending_events()
        if events:
            raise CollectorError("; ".join(events))


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


class NvidiaSmiCollector(EventSurfacing, Collector):
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
        self._proc: LineProcess | None = None
        self._parser: Any = None
        self._devices: set[str] = set()
        self._rows: list[dict[str, Any]] = []
        self._events: list[str] = []
        self._lags: list[float] = []
        self._lock = threading.Lock()

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
        self._proc = LineProcess("nvidia-smi", argv, self._on_line, clock=self.clock)
        try:
            self._proc.start()
        except OSError as e:
            raise CollectorError(f"could not start {argv[0]}: {e}") from None
        return devices

    def _on_line(self, line: str, t_arrival: float) -> None:
        try:
            row = self._parser.parse(line)
        except InputError as e:
            with self._lock:
                if len(self._events) < 10:
                    self._events.append(f"nvidia-smi printed a line that does not parse ({e})")
            return
        if row is None or row["device"] not in self._devices:
            return
        t_own = row["t"]
        if self.stamp == "arrival":
            row["t"] = t_arrival
            if self.clock is SYSTEM_CLOCK and len(self._lags) < self.LAG_CHECK_LINES:
                self._check_lag(t_arrival - t_own)
        with self._lock:
            self._rows.append(row)

    def _check_lag(self, lag: float) -> None:
        self._lags.append(lag)
        if len(self._lags) == self.LAG_CHECK_LINES:
            median = statistics.median(self._lags)
            if abs(median) > self.LAG_WARN_S + self.interval_ms / 1000.0:
                with self._lock:
                    self._events.append(
                        f"nvidia-smi lines arrive {median:+.1f} s from their own timestamps (output held back, "
                        "or a time-zone mismatch); samples are stamped on arrival (stamp=nvidia-smi uses "
                        "nvidia-smi's timestamps)")

    def read(self) -> list[dict[str, Any]]:
        self._raise_pending()
        with self._lock:
            rows, self._rows = self._rows, []
        return rows

    def close(self) -> None:
        if self._proc is not None:
            self._proc.close()
            self._proc = None
