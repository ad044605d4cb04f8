"""``wattprof collectors`` (what can be measured here) and ``wattprof demo`` (no GPU needed)."""

from __future__ import annotations

import click

from ._common import guard, print_report


@click.command()
@guard
def collectors() -> None:
    """List collectors and whether each can run on this machine (and why not).

    \b
    Example:
      wattprof collectors
    """
    from ..collectors.base import describe_all

    rows = describe_all()
    width = max(len(n) for n, _, _ in rows)
    for n, ok, reason in rows:
        click.echo(f"{n.ljust(width)}  {'yes' if ok else 'no '}  {reason}")


@click.command()
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Run directory (default: a new one under "
              "$WATTPROF_DIR or ./wattprof-runs).")
@click.option("--speed", type=click.FloatRange(min=1, max=1000), default=20.0, show_default=True,
              help="Replay speed (x real time).")
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@guard
def demo(out: str | None, speed: float, fmt: str) -> None:
    """Replay a real H100 capture through record -> run -> report (no GPU needed).

    The shipped trace (NVML every 10 ms on an H100 80GB, 58 s, six phases) is served by the NVML
    replay backend to the real NVML collector and sampler at 10 Hz, while the workload's step log
    is marked through the profile API, faster than real time.

    \b
    Example:
      wattprof demo --speed 50
    """
    from ..demo import run_demo

    run_dir = run_demo(out=out, speed=speed, progress=lambda m: click.echo(m, err=True))
    print_report(str(run_dir), fmt, None)
    click.echo(f"wattprof: demo run saved in {run_dir}", err=True)
