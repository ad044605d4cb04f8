"""A run opened for analysis: the run store's :class:`~wattprof.run.Run` plus its report.

The run store (``wattprof.run``) reads a run directory and knows nothing of reports; this
subclass, one layer up, adds the two conveniences a notebook user wants: :meth:`report` (the
report model) and :meth:`step_energy` (one row per step). :func:`wattprof.load_run` and
``SessionResult.open()`` return it, so the store never imports the report builder (no cycle).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .run import Run

if TYPE_CHECKING:
    import pandas as pd

    from .reports.model import Report


class AnalysedRun(Run):
    """A :class:`~wattprof.run.Run` with :meth:`report` and :meth:`step_energy`."""

    def report(self, **options: Any) -> Report:
        """The run's :class:`wattprof.reports.model.Report` (options: ``carbon=``, ``carbon_note=``,
        ``bottlenecks=``; see :func:`wattprof.reports.build.build_report`)."""
        from .reports.build import build_report

        return build_report(self, **options)

    def step_energy(self) -> pd.DataFrame:
        """One row per step: ``energy_j``, ``j_per_token``, ``mean_power_w``, ``source`` and ``boundary``
        (the report's: e.g. the GPUs' counters), see :mod:`wattprof.analysis.per_step`."""
        from .analysis import energy as energy_mod
        from .analysis.per_step import step_table
        from .reports.build import boundary_devices

        rep = self.report(bottlenecks=False, timeline_points=2)
        curves = energy_mod.curves(self.samples)
        chosen = [d.device for d in boundary_devices(rep.devices)]
        return step_table([curves[d] for d in chosen if d in curves], self.steps, rep.boundary)
