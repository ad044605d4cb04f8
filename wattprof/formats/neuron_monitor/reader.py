"""A saved ``neuron-monitor`` log (one JSON report per line) read into reports of samples."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import InputError
from .report import is_partial, report_info, report_period
from .samples import parse_report
from .values import as_dict


@dataclass
class NeuronReport:
    """One line of a neuron-monitor log."""

    line: int
    samples: list[dict[str, Any]]
    errors: list[str]
    info: dict[str, Any]
    partial: bool
    #: Seconds this report covers (its metric groups' longest ``period``), None without groups.
    period_s: float | None = None


@dataclass
class NeuronMonitorLog:
    reports: list[NeuronReport]
    #: Things skipped on purpose (a cut-off last line), one line each, for the user.
    warnings: list[str] = field(default_factory=list)


def read_neuron_monitor_jsonl(path: str | Path) -> NeuronMonitorLog:
    """Read a saved ``neuron-monitor`` stdout (one JSON report per line).

    A line that is not JSON raises :class:`InputError` with its path and line number, except a
    cut-off last line (neuron-monitor stopped mid-write), which is skipped with a warning. Reports
    carry no time: ``NeuronReport.line`` orders them (one per configured period).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found (expected neuron-monitor output, one JSON report per line)", path=str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text (expected neuron-monitor JSON lines)", path=str(p)) from None
    lines = text.splitlines()
    log = NeuronMonitorLog([])
    hardware: dict[str, Any] = {}
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except RecursionError:
            raise InputError("JSON nested too deeply; expected one neuron-monitor report per line",
                             path=str(p), line=n) from None
        except json.JSONDecodeError as e:
            if n == len(lines) and not text.endswith("\n"):
                log.warnings.append(f"{p}:{n}: last line is cut off (neuron-monitor stopped mid-write); skipped")
                continue
            raise InputError(f"not JSON ({e.msg} at column {e.colno}); expected one neuron-monitor "
                             "report per line", path=str(p), line=n) from None
        if not isinstance(obj, dict):
            raise InputError(f"a JSON {type(obj).__name__}, expected a neuron-monitor report object",
                             path=str(p), line=n)
        hardware.update({k: v for k, v in as_dict(obj.get("neuron_hardware_info")).items() if v not in (None, "")})
        samples, errors = parse_report(obj, hardware=hardware)
        log.reports.append(NeuronReport(n, samples, errors, report_info(obj), is_partial(obj), report_period(obj)))
    if not log.reports:
        raise InputError("no reports in file (expected neuron-monitor JSON lines)", path=str(p))
    return log
