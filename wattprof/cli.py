"""The ``wattprof`` command line. Thin: each command parses options and calls the library.

Exit statuses: 0 ok; 2 usage or input error (one line on stderr, no traceback unless --debug);
``record`` exits with the child's status (128+N if killed by signal N, 127 if not found, 126 if
not executable) and 125 when the child succeeded but wattprof itself failed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__
from .errors import InputError, WattprofError

EXIT_USAGE = 2
EXIT_WATTPROF_FAILED = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

_debug = False


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"wattprof: error: {message}", err=True)
    sys.exit(code)


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn wattprof's own errors into one line and an exit status (2 for bad input)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as e:
            if _debug:
                raise
            _fail(str(e), EXIT_USAGE)
        except WattprofError as e:
            if _debug:
                raise
            _fail(str(e), 1)
        except OSError as e:
            if _debug:
                raise
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            _fail(f"{where}{e.strerror or e}", 1)

    return wrapper


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
    global _debug
    _debug = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="wattprof: %(message)s")


def _parse_tags(tags: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for t in tags:
        k, eq, v = t.partition("=")
        if not eq or not k:
            raise InputError(f"--tag '{t}': expected KEY=VALUE")
        out[k] = v
    return out


# ---- record ---------------------------------------------------------------------------------------


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Run directory (default: "
              "$WATTPROF_DIR or ./wattprof-runs, then <time>-<name>).")
@click.option("--name", "-n", help="Run name (default: the command's name).")
@click.option("--collector", "-c", "collectors", multiple=True, metavar="NAME[:K=V,...]",
              help="Collector to use; repeatable (default: every available one of nvml, host). "
                   "See `wattprof collectors`.")
@click.option("--interval", "-i", type=click.FloatRange(min=0.001), default=0.1, show_default=True,
              help="Sampling interval in seconds.")
@click.option("--tag", "-t", "tags", multiple=True, metavar="KEY=VALUE", help="Tag the run (repeatable).")
@click.option("--grace", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds a forwarded signal gives the command before it is killed.")
@click.option("--quiet", "-q", is_flag=True, help="No summary at the end.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@_guard
def record(out: str | None, name: str | None, collectors: tuple[str, ...], interval: float,
           tags: tuple[str, ...], grace: float, quiet: bool, command: tuple[str, ...]) -> None:
    """Record a run around COMMAND (run directly, no shell).

    The command's own calls to `wattprof.profile()` / `wattprof.step()` join this run. SIGINT,
    SIGTERM and SIGHUP are forwarded to it; wattprof exits with its exit status.

    \b
    Examples:
      wattprof record -- python train.py --epochs 1
      wattprof record -n bench -t commit=abc123 -c nvml -c host -- ./serve.sh
      wattprof record -c nvml-replay -- sleep 5   # no GPU: replay a recorded H100 trace
    """
    from .collectors import base
    from .recorder import Recorder
    from .reports import text
    from .reports.build import build_report
    from .run import Run, RunWriter, default_run_dir

    tag_map = _parse_tags(tags)
    run_name = name or Path(command[0]).name
    chosen = base.resolve(collectors or None)
    run_dir = Path(out) if out else default_run_dir(run_name)
    writer = RunWriter.create(run_dir, name=run_name, tags=tag_map, command=list(command), interval_s=interval)
    recorder = Recorder(writer, chosen, interval=interval)
    recorder.start()
    env = dict(os.environ, WATTPROF_RUN_DIR=str(run_dir.resolve()), WATTPROF_RUN_ID=writer.meta["id"])
    status, rc = "failed", EXIT_WATTPROF_FAILED
    try:
        try:
            proc = subprocess.Popen(list(command), env=env)  # noqa: S603 - argv list, no shell
        except FileNotFoundError:
            writer.event("command_not_found", f"command not found: {command[0]}")
            click.echo(f"wattprof: error: command not found: {command[0]}", err=True)
            status, rc = "failed", EXIT_NOT_FOUND
        except PermissionError:
            writer.event("command_not_executable", f"not executable: {command[0]}")
            click.echo(f"wattprof: error: permission denied: {command[0]}", err=True)
            status, rc = "failed", EXIT_NOT_EXECUTABLE
        else:
            forwarded = _forward_signals(proc, writer, grace)
            code = proc.wait()
            for sig, handler in forwarded.restore.items():
                signal.signal(sig, handler)
            rc = code if code >= 0 else 128 - code
            status = "interrupted" if forwarded.received else ("finished" if code == 0 else "failed")
    finally:
        recorder.stop()
        writer.finalize(status=status, exit_code=rc)
    if not quiet:
        try:
            click.echo(text.render(build_report(Run.open(run_dir))), err=True)
        except WattprofError as e:
            click.echo(f"wattprof: could not summarise the run: {e}", err=True)
        click.echo(f"wattprof: run saved in {run_dir}", err=True)
    sys.exit(rc)


class _Forwarding:
    def __init__(self) -> None:
        self.received: list[int] = []
        self.restore: dict[int, Any] = {}


def _forward_signals(proc: subprocess.Popen, writer: Any, grace: float) -> _Forwarding:
    state = _Forwarding()

    def kill_later() -> None:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            writer.event("command_killed", f"command ignored the signal for {grace} s: SIGKILL sent")
            proc.kill()

    def handler(signum: int, frame: Any) -> None:
        state.received.append(signum)
        writer.event("signal", f"received {signal.Signals(signum).name}, forwarded to the command")
        # A terminal's Ctrl-C already reached the command (same foreground process group).
        from_tty = signum == signal.SIGINT and _child_in_foreground_group()
        if not from_tty and proc.poll() is None:
            proc.send_signal(signum)
        if len(state.received) == 1:
            threading.Thread(target=kill_later, daemon=True).start()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        state.restore[sig] = signal.signal(sig, handler)
    return state


def _child_in_foreground_group() -> bool:
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


# ---- import -----------------------------------------------------------------------------------------


@main.command(name="import")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--samples", "samples", type=click.Path(dir_okay=False), help="Samples file to add.")
@click.option("--samples-format", type=click.Choice(["auto", "nvml-trace-csv"]), default="auto",
              show_default=True, help="Format of --samples.")
@click.option("--steps", "steps", type=click.Path(dir_okay=False), help="Steps log to add (JSON lines).")
@click.option("--steps-format", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("--name", "-n", help="Run name when creating a new run.")
@click.option("--report/--no-report", "show", default=False, help="Print the text report afterwards.")
@_guard
def import_(run_dir: str, samples: str | None, samples_format: str, steps: str | None, steps_format: str,
            name: str | None, show: bool) -> None:
    """Create (or extend) RUN_DIR from existing logs: a samples file and/or a steps log.

    Repeatable on the same run to add another source. Steps JSONL: one object per line with
    `t_start`, `t_end` (Unix seconds), optional `tokens`, `step`, and a label under `label`,
    `phase` or `kind`.

    \b
    Example:
      wattprof import runs/h100 --samples nvml_samples_10ms.csv --steps steps.jsonl --report
    """
    from .importer import (
        SAMPLE_FORMATS,
        describe,
        detect_samples_format,
        import_samples,
        import_steps,
        open_or_create,
    )

    if not samples and not steps:
        raise InputError("nothing to import: give --samples FILE and/or --steps FILE")
    # Validate the inputs before creating anything on disk.
    for f in (samples, steps):
        if f and not Path(f).is_file():
            raise InputError("file not found", path=f)
    fmt = None
    if samples:
        fmt = detect_samples_format(Path(samples)) if samples_format == "auto" else samples_format
        assert fmt in SAMPLE_FORMATS
    writer = open_or_create(Path(run_dir), name=name)
    if samples:
        r = import_samples(writer, samples, fmt)
        click.echo(f"imported samples {describe(r)}", err=True)
    if steps:
        r = import_steps(writer, steps, steps_format)
        click.echo(f"imported steps {describe(r)}", err=True)
    if show:
        _print_report(run_dir, "text", None)


# ---- report -----------------------------------------------------------------------------------------


def _print_report(run_dir: str, fmt: str, output: str | None) -> None:
    from .reports import RENDERERS
    from .reports.build import build_report
    from .run import Run

    rendered = RENDERERS[fmt](build_report(Run.open(run_dir)))
    if output:
        Path(output).write_text(rendered, encoding="utf-8")
        click.echo(f"wattprof: wrote {output}", err=True)
    else:
        click.echo(rendered, nl=False)


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to a file instead of stdout.")
@_guard
def report(run_dir: str, fmt: str, output: str | None) -> None:
    """Report a run: energy, per label (J/token), idle, per device, with sources and boundary.

    \b
    Examples:
      wattprof report wattprof-runs/20261123-101500-train
      wattprof report RUN --format json -o report.json
    """
    _print_report(run_dir, fmt, output)


# ---- collectors ---------------------------------------------------------------------------------------


@main.command()
@_guard
def collectors() -> None:
    """List collectors and whether each can run on this machine (and why not).

    \b
    Example:
      wattprof collectors
    """
    from .collectors.base import describe_all

    rows = describe_all()
    width = max(len(n) for n, _, _ in rows)
    for n, ok, reason in rows:
        click.echo(f"{n.ljust(width)}  {'yes' if ok else 'no '}  {reason}")


# ---- demo -------------------------------------------------------------------------------------------------


@main.command()
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Run directory (default: a new one under "
              "$WATTPROF_DIR or ./wattprof-runs).")
@click.option("--speed", type=click.FloatRange(min=1, max=1000), default=20.0, show_default=True,
              help="Replay speed (x real time).")
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_guard
def demo(out: str | None, speed: float, fmt: str) -> None:
    """Replay a real H100 capture through record -> run -> report (no GPU needed).

    The shipped trace (NVML every 10 ms on an H100 80GB, 58 s, six phases) is served by the NVML
    replay backend to the real NVML collector and sampler at 10 Hz, while the workload's step log
    is marked through the profile API, faster than real time.

    \b
    Example:
      wattprof demo --speed 50
    """
    from .demo import run_demo

    run_dir = run_demo(out=out, speed=speed, progress=lambda m: click.echo(m, err=True))
    _print_report(str(run_dir), fmt, None)
    click.echo(f"wattprof: demo run saved in {run_dir}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
