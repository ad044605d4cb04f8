"""The bottleneck rules: from one window's evidence (time-weighted means, see
:mod:`wattprof.analysis.bottleneck`) to a :class:`Verdict` with its reason and suggestion.

Pure functions of a dict of numbers; no samples, no I/O.

Rules (in this order; thresholds in :class:`Thresholds`, each with a physical meaning)
-------------------------------------------------------------------------------------
``util`` is NVML ``utilization.gpu``: the percent of time at least one kernel was resident.
``busy_time_frac`` is the fraction of time ``util > 0``, i.e. of NVML utilisation periods
(1/6 s to 1 s) in which any kernel ran at all.

==============  ================================================================================
verdict         condition
==============  ================================================================================
idle            util < 5 %, kernels seen in < 25 % of utilisation periods (tolerates the trailing
                average of a busy phase just before), GPM SM activity (if any) < 5 %, and mean
                power <= 1.5 x the device's idle floor (``idle_power_w``, else the 2nd
                percentile of its power in the samples, at most 30 % of its limit); or, not on
                utilisation alone, mean power <= 1.15 x the idle floor with util < 15 %, kernels in
                < 50 % of periods and GPM SM activity (if any) < 5 %: a few % of utilisation at
                the floor is still idle (batch-1 decoding, kernels all the time, is not).
host-bound      the GPU has no kernel resident half of the time or more (util < 50 %: the GPU
                waits for the host more than it works); or the host spends more wall time
                between steps than inside them (inter-step gap fraction >= 50 %); or, with GPM,
                the SMs are active < 25 % of the time kernels are resident (sm_active < 0.25 x
                util, util >= 5 %): kernels too small to fill the GPU, i.e. launch-bound.
memory-bound    GPM: DRAM bandwidth while kernels run (dram_active / util) >= 70 % of peak (the
                achievable HBM peak is ~90 %: within ~20 % of the bandwidth roof) and DRAM
                activity >= tensor activity. NVML only: device memory is read or written during
                >= 85 % of the time a kernel is resident (mem_util / util >= 0.85; a pure
                bandwidth-bound kernel keeps the memory interface busy all the time it runs,
                compute-bound training sits around 0.6-0.7).
compute-bound   otherwise: the GPU is busy and not limited by memory bandwidth.
==============  ================================================================================

Modifiers (``power-capped`` on any verdict but idle, ``thermal-throttled`` on any):

* ``power-capped``: SW power cap (0x4) or HW power brake (0x80) bit set >= 50 % of the time
  (the power limit, not the workload, sets the clock most of the time; 0x4 flickering on and
  off is normal near full load), or mean power >= 95 % of the limit.
* ``thermal-throttled``: SW/HW thermal slowdown bit (0x20/0x40) set >= 10 % of the time (never
  normal: any sustained share means cooling limits speed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

VerdictName = Literal["idle", "compute-bound", "memory-bound", "host-bound"]
Basis = Literal["gpm", "nvml"]


@dataclass(frozen=True)
class Thresholds:
    """The rules' thresholds (see the module docstring for their meaning)."""

    idle_util_pct: float = 5.0
    idle_busy_time_frac: float = 0.25
    idle_sm_active_pct: float = 5.0
    idle_power_ratio: float = 1.5
    idle_floor_max_frac: float = 0.30
    #: at the idle power floor a few % of utilisation is still idle (driver housekeeping, a poll)
    idle_floor_ratio: float = 1.15
    idle_floor_util_pct: float = 15.0
    #: ... unless kernels run in most utilisation periods (batch-1 decoding: tiny kernels all the time)
    idle_floor_busy_frac: float = 0.5
    host_util_pct: float = 50.0
    host_gap_frac: float = 0.5
    launch_sm_per_util: float = 0.25
    mem_util_per_util: float = 0.85
    dram_busy_pct: float = 70.0
    power_cap_frac: float = 0.5
    power_limit_frac: float = 0.95
    thermal_frac: float = 0.1
    min_coverage: float = 0.5


DEFAULT_THRESHOLDS = Thresholds()


@dataclass
class Verdict:
    verdict: VerdictName
    modifiers: list[str] = field(default_factory=list)
    #: The numbers the rules used (time-weighted means, fractions); missing inputs are absent.
    evidence: dict[str, float] = field(default_factory=dict)
    suggestion: str = ""
    #: "gpm" when GPM activity metrics covered the window, else "nvml".
    basis: Basis = "nvml"
    #: One line: which rule fired, with its numbers.
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["evidence"] = {k: float(v) for k, v in self.evidence.items()}
        return d


def classify(ev: dict[str, float], gap: float | None, th: Thresholds = DEFAULT_THRESHOLDS) -> Verdict | None:
    """The verdict of one window's evidence ``ev`` (completed in place with the ratios the rules
    use) and its inter-step gap fraction ``gap``; None without any activity measure."""
    util = ev.get("util_pct")
    sm = ev.get("sm_active_pct")
    if gap is not None:
        ev["gap_frac"] = gap
    # kernel-resident share of time: NVML util; GPM SM activity if NVML is missing.
    active = util if util is not None else sm
    if active is None:
        return None
    _add_ratios(ev)
    basis: Basis = "gpm" if sm is not None else "nvml"
    modifiers = _modifiers(ev, th)
    thermal = ev.get("thermal_frac")
    v = (_idle(ev, active, modifiers, basis, th) or _host_bound(ev, active, gap, modifiers, basis, th)
         or _memory_bound(ev, modifiers, basis, th) or _compute_bound(ev, active, modifiers, basis, th))
    if "thermal-throttled" in v.modifiers and thermal is not None:
        v.suggestion += (f" Clocks were thermally throttled {thermal:.0%} of the time: check cooling, airflow "
                         "and fan settings.")
    return v


def _add_ratios(ev: dict[str, float]) -> None:
    util, sm, mem, dram = (ev.get(k) for k in ("util_pct", "sm_active_pct", "mem_util_pct", "dram_active_pct"))
    if util is not None and sm is not None and util > 0:
        ev["sm_active_per_util"] = sm / util
    if util is not None and mem is not None and util > 0:
        ev["mem_util_per_util"] = mem / util
    if dram is not None and util is not None and util > 0:
        ev["dram_busy_pct"] = min(100.0, dram / (util / 100.0))


def _modifiers(ev: dict[str, float], th: Thresholds) -> list[str]:
    modifiers: list[str] = []
    cap = ev.get("power_cap_frac")
    pfrac = ev.get("power_frac")
    if (cap is not None and cap >= th.power_cap_frac) or (pfrac is not None and pfrac >= th.power_limit_frac):
        modifiers.append("power-capped")
    thermal = ev.get("thermal_frac")
    if thermal is not None and thermal >= th.thermal_frac:
        modifiers.append("thermal-throttled")
    return modifiers


def _idle(ev: dict[str, float], active: float, modifiers: list[str], basis: Basis,
          th: Thresholds) -> Verdict | None:
    """No activity, or (util alone is not the verdict) a few % of utilisation at the idle power floor."""
    busy, sm, power, floor = (ev.get(k) for k in ("busy_time_frac", "sm_active_pct", "power_w", "idle_power_w"))
    pw = power if power is not None else float("nan")
    fl = floor if floor is not None else float("nan")
    at_floor = power is not None and floor is not None and bool(np.isfinite(fl)) and fl > 0
    idle = active < th.idle_util_pct
    if idle and busy is not None:
        idle = busy < th.idle_busy_time_frac
    if idle and sm is not None:
        idle = sm < th.idle_sm_active_pct
    if idle and at_floor:
        idle = pw <= th.idle_power_ratio * fl
    floor_idle = (not idle and at_floor and pw <= th.idle_floor_ratio * fl
                  and active < th.idle_floor_util_pct and (sm is None or sm < th.idle_sm_active_pct)
                  and (busy is None or busy < th.idle_floor_busy_frac))
    if not (idle or floor_idle):
        return None
    if floor_idle:
        why = (f"power {_fmt(pw, th.idle_floor_ratio * fl)} W <= {th.idle_floor_ratio:g} x idle floor "
               f"{fl:.0f} W with util {_fmt(active, th.idle_floor_util_pct, th.idle_util_pct)} % < "
               f"{th.idle_floor_util_pct:g} %")
    else:
        why = (f"util {_fmt(active, th.idle_util_pct)} % < {th.idle_util_pct:g} %"
               + (f", kernels in {busy:.0%} of periods" if busy is not None else "")
               + (f", power {power:.0f} W near idle floor {fl:.0f} W" if power is not None and floor else ""))
    drew = f"{power:.0f} W" if power is not None else "unknown power"
    return Verdict(
        "idle", [m for m in modifiers if m != "power-capped"], ev,
        f"The GPU did no work for {_span(ev['duration_s'])} yet drew {drew}: release it (end the job or free the "
        "allocation) or give it other work; if the idle time is a wait, shorten it.",
        basis, why,
    )


def _host_bound(ev: dict[str, float], active: float, gap: float | None, modifiers: list[str], basis: Basis,
                th: Thresholds) -> Verdict | None:
    util, sm = ev.get("util_pct"), ev.get("sm_active_pct")
    if util is not None and sm is not None and util >= th.idle_util_pct and sm < th.launch_sm_per_util * util:
        sugg = (f"Kernels are resident {util:.0f} % of the time but the SMs are active only {sm:.1f} %: "
                "kernels too small for the GPU (launch-bound). Capture the step in CUDA graphs "
                "(torch.compile mode='reduce-overhead'), fuse small ops, or raise the batch size.")
        reason = (f"sm_active {_fmt(sm, th.launch_sm_per_util * util)} % < {th.launch_sm_per_util:g} x util "
                  f"{util:.0f} % (launch-bound)")
    elif gap is not None and gap >= th.host_gap_frac:
        sugg = (f"{gap:.0%} of the wall time is spent between steps: prepare the next batch while the GPU "
                "works (DataLoader num_workers > 0, pin_memory=True, prefetch_factor, non_blocking "
                "copies) and move host work out of the critical path.")
        reason = f"inter-step gaps {_fmt(100 * gap, 100 * th.host_gap_frac)} % >= {th.host_gap_frac:.0%}"
    elif active < th.host_util_pct:
        sugg = (f"The GPU has no kernel to run {100 - active:.0f} % of the time: host-side work inside "
                "the step (Python per-step/per-token overhead, kernel launches, synchronisations such as "
                ".item()) limits throughput. Give each launch more work (larger or continuous batching), "
                "use CUDA graphs / torch.compile, and profile the host (torch.profiler, py-spy).")
        reason = f"util {_fmt(active, th.host_util_pct, th.idle_util_pct)} % < {th.host_util_pct:g} %"
    else:
        return None
    return Verdict("host-bound", modifiers, ev, sugg, basis, reason)


def _memory_bound(ev: dict[str, float], modifiers: list[str], basis: Basis, th: Thresholds) -> Verdict | None:
    dram, tensor, mem, util = (ev.get(k) for k in ("dram_active_pct", "tensor_active_pct", "mem_util_pct",
                                                    "util_pct"))
    if dram is not None:
        dram_busy = ev.get("dram_busy_pct", dram)
        mem_bound = dram_busy >= th.dram_busy_pct and dram >= (tensor or 0.0)
        reason = (f"DRAM at {dram_busy:.0f} % of peak while busy (>= {th.dram_busy_pct:g} %), "
                  f"tensor {tensor or 0.0:.0f} %")
    elif mem is not None and util:
        mem_bound = mem / util >= th.mem_util_per_util
        reason = f"memory busy {mem / util:.2f} of kernel time (>= {th.mem_util_per_util:g})"
    else:
        return None
    if not mem_bound:
        return None
    sugg = ("Memory bandwidth is the limit: fuse element-wise ops so data stays on chip (torch.compile), "
            "keep tensors in lower precision (bf16/fp8), raise arithmetic intensity (larger batch or "
            "tiles) and remove redundant copies.")
    if "power-capped" in modifiers:
        sugg += " The power cap is not what limits it."
    return Verdict("memory-bound", modifiers, ev, sugg, basis, reason)


def _compute_bound(ev: dict[str, float], active: float, modifiers: list[str], basis: Basis,
                   th: Thresholds) -> Verdict:
    tensor = ev.get("tensor_active_pct")
    reason = f"util {_fmt(active, th.host_util_pct)} % >= {th.host_util_pct:g} %, not memory-bound"
    if "power-capped" in modifiers:
        limit = ev.get("power_limit_w")
        lim = f" (e.g. nvidia-smi -pl {0.8 * limit:.0f}, 80 % of {limit:.0f} W)" if limit else ""
        sugg = ("Compute-bound at the power limit: the clock is already held back by power, so lowering the "
                f"power limit{lim} costs little speed and saves energy; compare J/token at a few limits.")
    elif tensor is not None and tensor < 30.0:
        sugg = (f"Compute-bound but the tensor cores are active only {tensor:.0f} %: move the math to tensor "
                "cores (bf16/tf32/fp8 matmuls, fused attention kernels) to do the same work in less time.")
    else:
        sugg = ("Compute-bound: speed and energy now come from doing less work per token (bf16/fp8, fused "
                "attention, avoiding recomputation); a lower power limit may also save energy at small cost.")
    return Verdict("compute-bound", modifiers, ev, sugg, basis, reason)


def _fmt(value: float, *thresholds: float) -> str:
    """``value`` with as few decimals as keep it apart from every threshold it is compared with:
    5.18 against 5 prints "5.18", not "5" (a reason must not round a threshold away)."""
    for d in range(0, 4):
        s = f"{value:.{d}f}"
        if all(float(s) != round(t, d) or value == t for t in thresholds):
            return s
    return f"{value:.4g}"


def _span(seconds: float) -> str:
    """``0.4`` -> ``400 ms``, ``12.3`` -> ``12 s``, ``300`` -> ``5 min`` (never "for 0 s")."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
