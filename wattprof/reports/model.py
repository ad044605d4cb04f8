"""What a report says, as plain data (no formatting). Renderers read only these classes.

Units are in the field names; every energy figure carries its source and boundary. The JSON
report is ``asdict`` of :class:`Report`: its keys are documented in docs/report-json.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ..analysis.attribution import ModelEnergy


class _AnalysisVerdict(Protocol):  # analysis.bottleneck.Verdict, without importing the analysis here
    @property
    def verdict(self) -> str: ...
    @property
    def modifiers(self) -> list[str]: ...
    @property
    def evidence(self) -> dict[str, float]: ...
    @property
    def suggestion(self) -> str: ...
    @property
    def basis(self) -> str: ...
    @property
    def reason(self) -> str: ...


@dataclass
class BottleneckVerdict:
    """Why a label (or the unlabelled time) cost what it cost: ``verdict`` (compute-bound,
    memory-bound, host-bound, idle, ...), ``modifiers`` (power-capped, thermal-throttled), the
    numbers the rules used (``evidence``: time-weighted means and fractions, units in the keys),
    what to try, which metrics decided (``basis``: gpm | nvml) and the rule that fired (``reason``).
    The JSON report keeps these keys (docs/report-json.md)."""

    verdict: str
    modifiers: list[str] = field(default_factory=list)
    evidence: dict[str, float] = field(default_factory=dict)
    suggestion: str = ""
    basis: str = "nvml"
    reason: str = ""

    @classmethod
    def of(cls, v: _AnalysisVerdict) -> BottleneckVerdict:
        """The report's copy of an :class:`wattprof.analysis.bottleneck.Verdict` (plain floats)."""
        return cls(verdict=str(v.verdict), modifiers=[str(m) for m in v.modifiers],
                   evidence={str(k): float(x) for k, x in v.evidence.items()}, suggestion=v.suggestion,
                   basis=str(v.basis), reason=v.reason)

    @property
    def title(self) -> str:
        """``compute-bound + power-capped``."""
        return " + ".join([self.verdict, *self.modifiers])

    @property
    def host_bound(self) -> bool:
        return self.verdict == "host-bound"


@dataclass
class WindowVerdict:
    """The verdict of one time window of the run (the bottleneck timeline)."""

    t_start: float
    t_end: float
    verdict: str
    modifiers: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, t_start: float, t_end: float, v: _AnalysisVerdict) -> WindowVerdict:
        return cls(float(t_start), float(t_end), str(v.verdict), [str(m) for m in v.modifiers])


@dataclass
class DeviceReport:
    device: str
    name: str | None
    kind: str
    energy_j: float
    energy_source: str  # counter | instant_power | averaged_power | estimate | none
    energy_source_description: str
    estimated: bool
    power_source: str | None  # what the collector/import said about where power came from
    mean_power_w: float | None
    max_power_w: float | None
    power_limit_w: float | None
    t_first: float | None
    t_last: float | None
    notes: list[str] = field(default_factory=list)
    #: NVIDIA devices with both a counter and instant power: {counter_j, instant_power_j, difference_pct}
    self_check: dict[str, float] | None = None


@dataclass
class LabelReport:
    label: str
    energy_j: float
    in_step_energy_j: float
    between_steps_energy_j: float
    duration_s: float
    in_step_duration_s: float
    tokens: float | None
    j_per_token: float | None
    steps: int
    mean_step_s: float | None
    mean_power_w: float | None
    bottleneck: BottleneckVerdict | None = None
    #: inference (requests): prompt/output tokens, per output token and per request, steady state
    prompt_tokens: float | None = None
    output_tokens: float | None = None
    j_per_output_token: float | None = None
    j_per_request: float | None = None
    steady_state: dict[str, Any] | None = None
    steady_state_note: str | None = None
    flags: list[str] = field(default_factory=list)


@dataclass
class IdleReport:
    """The time the accelerators actually idled (analysis/idle.py): inside the unlabelled time, every
    accelerator at its idle floor with no activity. Not the same as unlabelled time."""

    energy_j: float
    duration_s: float
    mean_power_w: float | None
    bottleneck: BottleneckVerdict | None = None
    #: the idle floor used per device (W) and the rule, in words
    idle_power_floor_w: dict[str, float] = field(default_factory=dict)
    rule: str = ""


@dataclass
class UnlabelledReport:
    """Time in the run outside every label's span (all of the run when there are no step marks),
    and the part of it that was idle."""

    energy_j: float
    duration_s: float
    mean_power_w: float | None
    idle_energy_j: float
    idle_duration_s: float
    bottleneck: BottleneckVerdict | None = None


@dataclass
class WastedEnergy:
    """Energy spent while the accelerators waited: idle time, and the host-side gaps of labels
    judged host-bound (between their steps, measured; inside their steps, estimated as the waiting
    share of the step time at the idle floor). Never the compute inside steps."""

    idle_j: float
    host_bound_j: float  # host_between_steps_j + host_in_step_wait_j
    total_j: float
    share: float  # of the run's energy
    host_between_steps_j: float = 0.0  # measured: energy between consecutive steps of host-bound labels
    host_in_step_wait_j: float = 0.0  # ESTIMATE: (1 - util) x in-step time x idle floor power
    basis: str = ""


@dataclass
class CarbonReport:
    """CO2e of the run: energy (boundary of the report) x PUE x grid intensity, location-based."""

    basis: str
    location: str
    intensity_g_per_kwh: float
    intensity_source: str
    intensity_year: str | None
    pue: float
    pue_source: str
    energy_kwh: float
    facility_kwh: float
    g_co2e: float
    g_co2e_per_million_tokens: float | None
    by_label_g_co2e: dict[str, float]
    car_km: float
    car_miles: float
    equivalent_source: str = "EPA-420-F-23-014: about 400 g CO2 per passenger-car mile"


@dataclass
class Series:
    """A power time series for plots (downsampled; ``t`` in Unix seconds)."""

    device: str
    t: list[float]
    power_w: list[float]
    power_column: str
    power_limit_w: float | None


@dataclass
class Segment:
    label: str
    t_start: float
    t_end: float


@dataclass
class NodeReport:
    """One node of a merged multi-node run (devices ``<node>/...``)."""

    node: str
    hostname: str | None
    energy_j: float  # the node's devices inside the report's boundary
    devices: list[str]  # every device of the node (host included)
    clock_offset_s: float | None = None  # this node's clock minus the reference node's
    clock_offset_method: str | None = None  # reference | steps | power | none
    clock_corrected: bool = False


@dataclass
class TaskReport:
    """One agent task (an ``invoke_agent`` span, else a trace): docs/agents.md."""

    id: str
    name: str
    energy_j: float  # llm + tool + wait: the task's whole span, concurrency split (docs/agents.md)
    duration_s: float
    llm_calls: int
    tool_calls: int
    input_tokens: float | None
    output_tokens: float | None
    j_per_output_token: float | None
    llm_energy_j: float
    tool_energy_j: float
    wait_energy_j: float
    tool_s: float
    wait_s: float
    t_start: float
    t_end: float
    g_co2e: float | None = None
    co2_location: str | None = None  # None: no location given, CO2 not computed
    costliest_call: dict[str, Any] | None = None


#: Energy of one model's calls (their concurrency shares), per input and per output token: the
#: analysis result as it is (one definition of its fields)
ModelReport = ModelEnergy


@dataclass
class AgentsSummary:
    """How task energies were attributed, their distribution and the costliest calls."""

    rule: str
    semconv: str | None
    tasks: int
    energy_j: float  # energy over the union of the task spans (== the sum of the tasks' energy_j)
    distribution_j: dict[str, float] | None
    costliest_calls: list[dict[str, Any]]
    flags: list[str] = field(default_factory=list)


UNITS = {
    "energy_j": "joules", "duration_s": "seconds", "j_per_token": "joules per token",
    "power_w": "watts", "t_first": "Unix seconds", "t_last": "Unix seconds", "tokens": "count",
    "g_co2e": "grams CO2-equivalent", "kwh": "kilowatt-hours",
}


@dataclass
class Report:
    run: dict[str, Any]  # id, name, path, status, tags, command, started_at, ended_at, exit_code
    boundary: str  # which devices the totals cover, e.g. "GPU only (1 device)"
    energy_j: float
    energy_source: str
    estimated: bool
    duration_s: float
    tokens: float | None
    j_per_token: float | None
    steps: int
    devices: list[DeviceReport]
    by_label: dict[str, LabelReport]
    idle: IdleReport
    host: DeviceReport | None
    flags: list[str]
    warnings: list[str]
    events: int
    wasted: WastedEnergy | None = None
    carbon: CarbonReport | None = None
    carbon_note: str | None = None  # why there is no CO2 figure
    timeline: list[Series] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    bottleneck_timeline: list[WindowVerdict] = field(default_factory=list)
    #: merged multi-node runs: per-node subtotals (empty for a single-node run)
    nodes: dict[str, NodeReport] = field(default_factory=dict)
    #: runs with GenAI spans (docs/agents.md): per agent task (costliest first) and per model
    tasks: list[TaskReport] = field(default_factory=list)
    by_model: dict[str, ModelReport] = field(default_factory=dict)
    agents: AgentsSummary | None = None
    #: serving engines' token counters scraped during the run (collector prometheus): J/token over time
    serving: list[dict[str, Any]] = field(default_factory=list)
    #: time outside every label's span (the whole run without step marks); idle is a part of it
    unlabelled: UnlabelledReport | None = None
    #: imported step sources on a foreign clock: {source: {offset_s, offset_uncertainty_s, offset_method, ...}}
    step_clocks: dict[str, dict[str, Any]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=lambda: dict(UNITS))
    schema_version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
