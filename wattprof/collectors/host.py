"""The host: CPU utilisation and memory (psutil); CPU energy from RAPL when readable, otherwise a
labelled estimate.

RAPL (``/sys/class/powercap/intel-rapl:N/energy_uj``, Intel and AMD Zen) is a cumulative counter
in microjoules per package that wraps at ``max_energy_range_uj``; it is root-only since Linux 5.10
and absent in most VMs. Without it, power is estimated per vCPU as ``min + util x (max - min)``
plus memory, with Cloud Carbon Footprint's AWS averages (REFERENCE.md, "Host"): 0.74 W min and
3.5 W max per vCPU, 0.392 W per GB of memory. The estimate goes to ``power_est_w`` and is never
mixed with measurements.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..clock import SYSTEM_CLOCK, Clock
from .base import Collector

# Cloud Carbon Footprint, AWS coefficients (REFERENCE.md "Host").
VCPU_MIN_W = 0.74
VCPU_MAX_W = 3.5
MEMORY_W_PER_GB = 0.392

RAPL_ROOT = Path("/sys/class/powercap")


class RaplReader:
    """Cumulative CPU package energy in joules from RAPL, unwrapping each counter."""

    def __init__(self, root: Path = RAPL_ROOT) -> None:
        # Top-level zones only (intel-rapl:0, intel-rapl:1): sub-zones (intel-rapl:0:0) are parts of them.
        self.zones = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
        self._last: dict[Path, int] = {}
        self._total_uj: dict[Path, int] = {}
        self._range: dict[Path, int] = {}

    def readable(self) -> tuple[bool, str]:
        if not self.zones:
            return False, f"no RAPL zones under {RAPL_ROOT}"
        try:
            for z in self.zones:
                int((z / "energy_uj").read_text())
        except PermissionError:
            return False, "RAPL energy_uj is not readable (root-only since Linux 5.10)"
        except (OSError, ValueError) as e:
            return False, f"RAPL unreadable ({e})"
        return True, f"RAPL ({len(self.zones)} package zone(s))"

    def open(self) -> None:
        for z in self.zones:
            self._range[z] = int((z / "max_energy_range_uj").read_text())
            self._last[z] = int((z / "energy_uj").read_text())
            self._total_uj[z] = 0

    def read_j(self) -> float:
        for z in self.zones:
            v = int((z / "energy_uj").read_text())
            delta = v - self._last[z]
            if delta < 0:  # wrapped
                delta += self._range[z]
            self._total_uj[z] += delta
            self._last[z] = v
        return sum(self._total_uj.values()) / 1e6


class HostCollector(Collector):
    name = "host"
    metrics = ("cpu_util_pct", "mem_used_bytes", "mem_total_bytes", "energy_j", "power_est_w")

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, rapl_root: str | None = None,
                 vcpu_min_w: float = VCPU_MIN_W, vcpu_max_w: float = VCPU_MAX_W,
                 memory_w_per_gb: float = MEMORY_W_PER_GB) -> None:
        super().__init__(clock=clock)
        self.rapl = RaplReader(Path(rapl_root) if rapl_root else RAPL_ROOT)
        self.vcpu_min_w = vcpu_min_w
        self.vcpu_max_w = vcpu_max_w
        self.memory_w_per_gb = memory_w_per_gb
        self._use_rapl = False
        self._ncpu = os.cpu_count() or 1

    def available(self) -> tuple[bool, str]:
        try:
            import psutil  # noqa: F401
        except ImportError:
            return False, "psutil is not installed"
        ok, why = self.rapl.readable()
        return True, why if ok else f"psutil; CPU power estimated ({why})"

    def open(self) -> dict[str, dict]:
        import psutil

        psutil.cpu_percent(None)  # prime: the first call has no interval to measure
        self._use_rapl, why = self.rapl.readable()
        if self._use_rapl:
            self.rapl.open()
            source = f"measured: {why}, CPU packages only"
        else:
            source = (f"estimated: {self._ncpu} vCPU x ({self.vcpu_min_w} + util x "
                      f"({self.vcpu_max_w} - {self.vcpu_min_w})) W + {self.memory_w_per_gb} W/GB memory "
                      f"(Cloud Carbon Footprint AWS coefficients); {why}")
        return {"host": {"kind": "host", "name": _cpu_name(), "vcpus": self._ncpu, "power_source": source,
                         "collector": self.name}}

    def read(self) -> list[dict[str, Any]]:
        import psutil

        util = psutil.cpu_percent(None)
        mem = psutil.virtual_memory()
        row: dict[str, Any] = {"device": "host", "cpu_util_pct": util, "mem_used_bytes": float(mem.used),
                               "mem_total_bytes": float(mem.total), "t": self.clock.time()}
        if self._use_rapl:
            row["energy_j"] = self.rapl.read_j()
        else:
            row["power_est_w"] = self.estimate_w(util, mem.total)
        return [row]

    def estimate_w(self, util_pct: float, mem_total_bytes: float) -> float:
        cpu = self._ncpu * (self.vcpu_min_w + util_pct / 100.0 * (self.vcpu_max_w - self.vcpu_min_w))
        return cpu + mem_total_bytes / 1e9 * self.memory_w_per_gb


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "CPU"
