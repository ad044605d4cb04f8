"""What the command modules share: exit statuses, turning wattprof's errors into one line, option
parsing helpers, the carbon options and writing a report."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from ..errors import InputError, WattprofError

EXIT_USAGE = 2
#: ``record``: the command succeeded but wattprof itself failed (the run could not be finalised)
EXIT_WATTPROF_FAILED = 125

#: Formats of ``report``, ``compare`` and ``nightly`` (``--format``).


class _State:
    debug = False  # --debug: tracebacks instead of one line


state = _State()


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"wattprof: error: {message}", err=True)
    sys.exit(code)


def guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn wattprof's own errors into one line and an exit status (2 for bad input)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as e:
            if state.debug:
                raise
            fail(str(e), EXIT_USAGE)
        except WattprofError as e:
            if state.debug:
                raise
            fail(str(e), 1)
        except OSError as e:
            if state.debug:
                raise
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            fail(f"{where}{e.strerror or e}", 1)

    return wrapper


def kv(pairs: tuple[str, ...], what: str) -> dict[str, str]:
    """``("a=1", "b=2")`` -> ``{"a": "1", "b": "2"}``; ``what`` names the option in errors."""
    out = {}
    for p in pairs:
        k, eq, v = p.partition("=")
        if not eq or not k:
            raise InputError(f"{what} '{p}': expected KEY=VALUE")
        out[k] = v
    return out


def format_for(fmt: str | None, output: str | None) -> str:
    """The report format: ``--format``, else from ``-o``'s extension (the renderer registry), else text."""
    from ..reports.registry import format_for_path

    return fmt or format_for_path(output)


def emit(text: str, output: str | None) -> None:
    """Write ``text`` to ``output`` (and say so on stderr), or to stdout."""
    # text no encoding can write (a lone surrogate in a label or name): shown escaped, never a crash
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wattprof: wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


def carbon_context(region: str | None, country: str | None, intensity: float | None,
                   pue: float | None) -> tuple[Any, str | None]:
    """(carbon context or None, note): an unknown location is a usage error, never a silent default."""
    from ..analysis.carbon import resolve_intensity

    if pue is not None and region is None and country is None and intensity is None:
        raise InputError("--pue needs a location: --region, --country or --intensity")
    # An unknown location is a usage error (exit 2) before anything is reported: a CI job that asked
    # for CO2 must not get a report without it and exit 0.
    flag = "--region" if region is not None else "--country" if country is not None else "--intensity"
    try:
        return resolve_intensity(region=region, country=country, intensity_g_per_kwh=intensity, pue=pue), None
    except InputError as e:
        raise InputError(f"{flag}: {e}") from None


def print_report(run_dir: str, fmt: str | None, output: str | None,
                 carbon: tuple[Any, str | None] = (None, None)) -> None:
    """Build the report of ``run_dir`` and write it in ``fmt`` (see :func:`format_for`)."""
    from ..reports import RENDERERS
    from ..reports.build import build_report
    from ..run import Run

    fmt = format_for(fmt, output)
    if fmt not in RENDERERS:
        raise InputError(f"unknown report format '{fmt}' (known: {', '.join(RENDERERS)})")
    ctx, note = carbon
    emit(RENDERERS[fmt](build_report(Run.open(run_dir), carbon=ctx, carbon_note=note)), output)


def carbon_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--region / --country / --intensity / --pue, shared by the commands that report CO2."""
    for opt in reversed([
        click.option("--region", metavar="aws:REGION", help="Cloud region for the grid carbon intensity, e.g. "
                     "aws:us-east-1 (PUE default 1.15, AWS-reported)."),
        click.option("--country", metavar="ISO3[/REGION]", help="Country (and sub-region) for the intensity, e.g. "
                     "FRA, USA/virginia, CAN/quebec (codecarbon's offline data; PUE default 1.0)."),
        click.option("--intensity", type=click.FloatRange(min=0), metavar="G_PER_KWH",
                     help="Grid intensity to use, in g CO2e per kWh."),
        click.option("--pue", type=click.FloatRange(min=1.0), help="Power usage effectiveness of the facility."),
    ]):
        fn = opt(fn)
    return fn
