"""What a report says, as plain data (no formatting). Renderers read only these classes.

Units are in the field names; every energy figure carries its source and boundary. The JSON
report is ``asdict`` of :class:`Report`: its keys are documented in docs/report-json.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
    bottleneck: dict[str, Any] | None = None


@dataclass
class IdleReport:
    energy_j: float
    duration_s: float
    mean_power_w: float | None


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
    units: dict[str, str] = field(default_factory=lambda: dict(UNITS))
    schema_version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


UNITS = {
    "energy_j": "joules", "duration_s": "seconds", "j_per_token": "joules per token",
    "power_w": "watts", "t_first": "Unix seconds", "t_last": "Unix seconds", "tokens": "count",
}
