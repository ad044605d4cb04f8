"""The ``wattprof`` command line. Thin: each command parses options and calls the library.

One module per command or command group: :mod:`.record` (``record -- CMD``), :mod:`.reports`
(``report``, ``compare``, ``nightly``), :mod:`.runs` (``import``, ``merge``, ``repair``),
:mod:`.export` (``export cloudwatch|prometheus``), :mod:`.misc` (``collectors``, ``demo``);
:mod:`._common` holds what they share (exit statuses, one-line errors, report output).

Exit statuses: 0 ok; 2 usage or input error (one line on stderr, no traceback unless --debug);
``record`` exits with the child's status (128+N if killed by signal N, 127 if not found, 126 if
not executable) and 125 when the child succeeded but wattprof itself failed.
"""

from __future__ import annotations

import logging

import click

from .._version import __version__
from . import _common, export, misc, record, reports, runs
from ._common import EXIT_USAGE, EXIT_WATTPROF_FAILED

__all__ = ["main", "EXIT_USAGE", "EXIT_WATTPROF_FAILED"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wattprof")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
def main(debug: bool) -> None:
    """Measure the energy GPUs and accelerators spend on training and inference runs.

    \b
    Examples:
      wattprof demo                               # replay a real H100 trace, no GPU needed
      wattprof record -- python train.py          # record any command
      wattprof report wattprof-runs/RUN           # energy, per label, per token
      wattprof import RUN --samples nvml.csv --steps steps.jsonl
      wattprof collectors                         # what can be measured here
    """
    _common.state.debug = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="wattprof: %(message)s")


for _command in (record.record, runs.merge, runs.repair, runs.import_, reports.report, reports.compare,
                 reports.nightly, export.export, misc.collectors, misc.demo):
    main.add_command(_command)
