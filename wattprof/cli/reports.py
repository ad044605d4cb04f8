"""Commands that read runs: ``report`` (one run), ``compare`` (two), ``nightly`` (a history)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import InputError
from ..reports.registry import Kind
from ..reports.registry import names as format_names
from ._common import carbon_context, carbon_options, emit, format_for, guard, print_report


def output_options(kind: Kind) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--format (the registered formats of ``kind``) / --output, shared by report and compare."""
    def add(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = click.option("--output", "-o", type=click.Path(dir_okay=False),
                          help="Write to a file instead of stdout.")(fn)
        return click.option("--format", "-f", "fmt", type=click.Choice(format_names(kind)), default=None,
                            help="Output format (default: from -o's extension, else text).")(fn)
    return add


EXIT_REGRESSION = 1
EXIT_NOTHING = 3


@click.command()
@click.argument("run_dir", type=click.Path())
@output_options("report")
@carbon_options
@guard
def report(run_dir: str, fmt: str | None, output: str | None, region: str | None, country: str | None,
           intensity: float | None, pue: float | None) -> None:
    """Report a run: energy per device, label and token, idle and wasted energy, bottlenecks,
    and CO2 when a location is given. Every figure names its source and boundary.

    \b
    Examples:
      wattprof report wattprof-runs/20261123-101500-train
      wattprof report RUN --region aws:us-east-1
      wattprof report RUN --format markdown > energy.md      # paste into a pull request
      wattprof report RUN -o report.html --country FRA       # one self-contained file with plots
      wattprof report RUN --format json -o report.json
    """
    from ..repair import finalise_if_abandoned

    if (fixed := finalise_if_abandoned(run_dir, by="wattprof report")) is not None:  # as `wattprof repair` does
        click.echo(f"wattprof: the run's recorder is gone: finalised it ({'; '.join(fixed.actions)})", err=True)
    print_report(run_dir, fmt, output, carbon_context(region, country, intensity, pue))


@click.command()
@click.argument("run_a", type=click.Path())
@click.argument("run_b", type=click.Path())
@output_options("compare")
@carbon_options
@guard
def compare(run_a: str, run_b: str, fmt: str | None, output: str | None, region: str | None, country: str | None,
            intensity: float | None, pue: float | None) -> None:
    """Compare two runs side by side: totals and per label energy, J/token, power, duration,
    bottleneck verdicts (and CO2 with a location), with B's change against A in percent.

    \b
    Examples:
      wattprof compare runs/monday runs/tuesday
      wattprof compare runs/a runs/b --format markdown --region aws:us-east-1
    """
    from ..analysis import nightly
    from ..reports import nightly as render
    from ..reports.summary import load_summary

    f = format_for(fmt, output)
    ctx, _ = carbon_context(region, country, intensity, pue)
    a, b = load_summary(run_a), load_summary(run_b)
    sections = nightly.compare(a, b)
    if ctx is not None:
        from ..analysis.carbon import co2_g

        ga = co2_g(a.energy_j, ctx) if a.energy_j is not None else None
        gb = co2_g(b.energy_j, ctx) if b.energy_j is not None else None
        change = 100 * (gb / ga - 1) if ga and gb is not None else None
        sections["totals"].append(nightly.Side("co2e_g", ga, gb, change))
    emit(render.COMPARE_RENDERERS[f](a, b, sections), output)


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--benchmark", "-b", "benchmarks", multiple=True, help="Only these benchmarks (repeatable; "
              "a run's benchmark is its tag benchmark=, else its name).")
@click.option("--baseline", default="last", show_default=True, metavar="last|median:N|RUN",
              help="What the latest run is compared with: the previous run, the median of the last N, or a "
                   "run directory. A verdict needs at least 3 earlier runs.")
@click.option("--threshold", type=click.FloatRange(min=0), default=5.0, show_default=True, metavar="PCT",
              help="Smallest change in percent that can be a regression (the noise may raise the bar).")
@click.option("--metric", type=click.Choice(["j_per_token", "energy_j", "duration_s", "mean_power_w", "j_per_step",
                                            "j_per_task"]),
              default="j_per_token", show_default=True, help="j_per_task: mean energy per agent task (docs/agents.md).")
@click.option("--label", help="Judge one label's metric instead of the run's.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="report.html | .md | .json (else text).")
@click.option("--format", "-f", "fmt", type=click.Choice(format_names("nightly")), default=None)
@click.option("--fail-on-regression", is_flag=True, help="Exit 1 when any benchmark regressed.")
@guard
def nightly(runs: tuple[str, ...], benchmarks: tuple[str, ...], baseline: str, threshold: float, metric: str,
            label: str | None, output: str | None, fmt: str | None, fail_on_regression: bool) -> None:
    """Judge each benchmark's latest run against its baseline; report trends and regressions.

    RUNS are run directories or directories holding runs. Exit status: 0 ok, 1 regression (with
    --fail-on-regression), 2 usage error, 3 nothing to compare.

    \b
    Examples:
      wattprof nightly /data/wattprof-runs --fail-on-regression -o nightly.html
      wattprof nightly runs/ --benchmark llama-8b --baseline median:7 --threshold 3
      wattprof nightly runs/ --benchmark agent-eval --metric j_per_task
    """
    from ..analysis import nightly as nl
    from ..history import find_runs
    from ..reports.nightly import NIGHTLY_RENDERERS, nightly_summary
    from ..reports.summary import load_history, load_summary

    f = format_for(fmt, output)
    kind, _ = nl.parse_baseline(baseline)
    if not find_runs(list(runs)):
        raise InputError(f"no run found in {', '.join(runs)} (a run is a directory with meta.json, "
                         "as `wattprof record` writes)")
    warnings: list[str] = []
    history = load_history(list(runs), warnings=warnings)
    for w in warnings:
        click.echo(f"wattprof: warning: {w}", err=True)
    if label is not None and not any(label in s.by_label for s in history):
        known = sorted({lab for s in history for lab in s.by_label})
        raise InputError(f"--label {label!r}: no run has this label (labels: {', '.join(known) or 'none'})")
    groups = nl.group(history)
    if benchmarks:
        unknown = [b for b in benchmarks if b not in groups]
        for b in unknown:
            warnings.append(f"no runs of benchmark {b!r}")
        groups = {k: v for k, v in groups.items() if k in benchmarks}
    named = None
    if kind == "run":
        if not (Path(baseline) / "meta.json").is_file():
            raise InputError(f"--baseline {baseline!r}: expected last, median:N or a run directory")
        named = load_summary(baseline)
    results = [r for v in groups.values()
               if (r := nl.evaluate(v, baseline=baseline, threshold_pct=threshold, metric=metric, label=label,
                                    named=named)) is not None]
    if not results:
        click.echo("wattprof: nothing to compare (each benchmark needs a latest run and a baseline)", err=True)
        sys.exit(EXIT_NOTHING)
    emit(NIGHTLY_RENDERERS[f](results, warnings), output)
    if output or f != "text":  # the verdicts always reach stdout (text already ends with them)
        click.echo(nightly_summary(results), nl=False, err=not output and f != "text")
    if fail_on_regression and any(r.change.verdict == "regression" for r in results):
        sys.exit(EXIT_REGRESSION)
