"""The ``wattprof`` command line. Thin: each command parses options and calls the library.

Exit statuses: 0 ok; 2 usage or input error (one line on stderr, no traceback unless --debug);
``record`` exits with the child's status (128+N if killed by signal N, 127 if not found, 126 if
not executable) and 125 when the child succeeded but wattprof itself failed.
"""

from __future__ import annotations

import json
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


def _kv(pairs: tuple[str, ...], what: str) -> dict[str, str]:
    """``("a=1", "b=2")`` -> ``{"a": "1", "b": "2"}``; ``what`` names the option in errors."""
    out = {}
    for p in pairs:
        k, eq, v = p.partition("=")
        if not eq or not k:
            raise InputError(f"{what} '{p}': expected KEY=VALUE")
        out[k] = v
    return out


# ---- record ---------------------------------------------------------------------------------------


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Run directory (default: "
              "$WATTPROF_DIR or ./wattprof-runs, then <time>-<name>).")
@click.option("--name", "-n", help="Run name (default: the name the command's own wattprof.profile() gives, "
              "else the script's or executable's stem: `python bench.py` -> bench).")
@click.option("--collector", "-c", "collectors", multiple=True, metavar="NAME[:K=V,...]",
              help="Collector to use; repeatable (default: every available one of nvml, host). "
                   "See `wattprof collectors`.")
@click.option("--interval", "-i", type=click.FloatRange(min=0.001), default=0.1, show_default=True,
              help="Sampling interval in seconds.")
@click.option("--tag", "-t", "tags", multiple=True, metavar="KEY=VALUE", help="Tag the run (repeatable).")
@click.option("--grace", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds a forwarded signal gives the command before it is killed.")
@click.option("--quiet", "-q", is_flag=True, help="No live status line and no summary at the end.")
@click.option("--progress/--no-progress", default=None,
              help="Live status line on stderr: power, energy, steps/s, J/token (default: when stderr is a terminal).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve live Prometheus metrics on this port while recording (0: any free port).")
@click.option("--metrics-addr", default="127.0.0.1", show_default=True,
              help="Address for --metrics-port (another address exposes the endpoint beyond this machine).")
@click.option("--otlp", "otlp_port", type=click.IntRange(0, 65535), is_flag=False, flag_value=4318, default=None,
              metavar="[=PORT]", help="Receive the command's OpenTelemetry GenAI spans (OTLP/HTTP on 127.0.0.1, "
              "default port 4318, 0: any free port) as model-call and tool steps grouped into agent tasks; "
              "the command gets OTEL_EXPORTER_OTLP_TRACES_ENDPOINT unless it has one (docs/agents.md).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@_guard
def record(out: str | None, name: str | None, collectors: tuple[str, ...], interval: float,
           tags: tuple[str, ...], grace: float, quiet: bool, progress: bool | None, metrics_port: int | None,
           metrics_addr: str, otlp_port: int | None, command: tuple[str, ...]) -> None:
    """Record a run around COMMAND (run directly, no shell).

    The command's own calls to `wattprof.profile()` / `wattprof.step()` join this run. SIGINT,
    SIGTERM and SIGHUP are forwarded to it; wattprof exits with its exit status.

    \b
    Examples:
      wattprof record -- python train.py --epochs 1
      wattprof record -n bench -t commit=abc123 -c nvml -c host -- ./serve.sh
      wattprof record -c nvml-replay -- sleep 5   # no GPU: replay a recorded H100 trace
      wattprof record --otlp=4318 -- python agent.py   # energy per agent task from its GenAI spans
    """
    from .collectors import base
    from .measuring import measuring_line
    from .naming import default_run_name
    from .recorder import Recorder
    from .reports import text
    from .reports.build import build_report
    from .run import Run, RunWriter, default_run_dir

    if quiet and progress:
        raise InputError("--quiet and --progress contradict each other: give one of them")
    tag_map = _kv(tags, "--tag")
    run_name = name or default_run_name(command)
    if out and (Path(out) / "meta.json").exists():
        raise InputError(f"--out {out}: already holds a run; record into a new directory "
                         "(or leave out --out for a fresh one)")
    chosen = base.resolve(collectors or None)
    run_dir = Path(out) if out else default_run_dir(run_name)
    writer = RunWriter.create(run_dir, name=run_name, tags=tag_map, command=list(command), interval_s=interval)
    recorder = Recorder(writer, chosen, interval=interval)
    recorder.start()
    metrics = None
    if metrics_port is not None:
        from .exporters.prometheus import LiveMetricsServer

        metrics = LiveMetricsServer.for_stats(recorder.stats, run={"run": run_name, "id": writer.meta["id"]})
        try:
            port = metrics.start(host=metrics_addr, port=metrics_port)
        except WattprofError:
            recorder.stop()
            writer.finalize(status="failed", exit_code=EXIT_USAGE)
            raise
        click.echo(f"wattprof: live metrics on http://{metrics_addr}:{port}/metrics", err=True)
    receiver = None
    if otlp_port is not None:
        from .otlp.receiver import OtlpReceiver

        receiver = OtlpReceiver(run_dir, port=otlp_port)
        try:
            receiver.start()
        except WattprofError:
            if metrics is not None:
                metrics.stop()
            recorder.stop()
            writer.finalize(status="failed", exit_code=EXIT_USAGE)
            raise
        click.echo(f"wattprof: receiving OTLP traces on {receiver.endpoint}", err=True)
    # after everything that can refuse the options: a usage error stays one line
    click.echo(f"wattprof: {measuring_line(writer.meta.get('devices') or {})}", err=True)
    live = None
    if not quiet and (progress if progress is not None else sys.stderr.isatty()):
        from .live import start_live_status

        live = start_live_status(recorder, run_dir, sys.stderr)
    env = dict(os.environ, WATTPROF_RUN_DIR=str(run_dir.resolve()), WATTPROF_RUN_ID=writer.meta["id"])
    if receiver is not None:
        from .otlp.receiver import child_env

        env = child_env(env, receiver.endpoint)
    status, rc = "failed", EXIT_WATTPROF_FAILED
    try:
        try:
            from .child import parent_death_signal

            # the child gets SIGTERM if this process is killed with SIGKILL (Linux; docs/reliability.md)
            proc = subprocess.Popen(list(command), env=env,  # noqa: S603 - argv list, no shell
                                    preexec_fn=parent_death_signal())  # noqa: PLW1509
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
            _merge_joined_identity(writer, run_dir, tag_map, name_given=name is not None)
    finally:
        if live is not None:
            live.stop()
        if metrics is not None:
            metrics.stop()
        if receiver is not None:
            _stop_receiver(receiver, writer)
        recorder.stop()
        try:
            writer.finalize(status=status, exit_code=rc)
        except WattprofError as e:  # meta.json could not be written: the run reads as unfinished
            click.echo(f"wattprof: error: the run could not be finalised: {e}", err=True)
            if rc == 0:
                rc = EXIT_WATTPROF_FAILED
    if rc in (EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE):  # nothing ran: no energy report, the run is marked failed
        click.echo(f"wattprof: nothing was measured; the run (marked failed) is in {run_dir}", err=True)
        sys.exit(rc)
    from .history import try_write_summary

    try_write_summary(run_dir)
    if not quiet:
        try:
            click.echo(text.render(build_report(Run.open(run_dir))), err=True)
        except WattprofError as e:
            click.echo(f"wattprof: could not summarise the run: {e}", err=True)
        click.echo(f"wattprof: run saved in {run_dir}", err=True)
    sys.exit(rc)


def _stop_receiver(receiver: Any, writer: Any) -> None:
    """Write the received spans' steps; a failure is an event of the run, never the command's status."""
    try:
        receiver.stop()
    except (WattprofError, OSError, ValueError) as e:
        writer.event("otlp_error", f"OTLP receiver could not write its steps: {e}")


def _merge_joined_identity(writer: Any, run_dir: Path, tags: dict[str, str], *, name_given: bool) -> None:
    """The command's own ``wattprof.profile(name, tags=...)`` names the run (the command line wins
    conflicts, and says so)."""
    from .naming import joined_profiles, merge_identity

    inner = joined_profiles(run_dir)
    if not inner:
        return
    ident = merge_identity(writer.meta["name"], writer.meta.get("tags") or {}, name_given=name_given, inner=inner)
    writer.meta["name"], writer.meta["tags"] = ident.name, ident.tags
    for note in ident.notes:
        writer.event("identity_conflict", note)
        click.echo(f"wattprof: note: {note}", err=True)


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


# ---- merge ------------------------------------------------------------------------------------------


@main.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Directory of the merged run (must not hold a run yet).")
@click.option("--node", "names", multiple=True,
              help="Node names in the order of SHARDS (default: each shard's `node` tag, else node0, node1, ...).")
@click.option("--correct/--no-correct", default=True, show_default=True,
              help="Shift nodes whose clock is off by more than the sampling interval onto the first node's clock.")
@click.option("--name", "-n", help="Name of the merged run.")
@_guard
def merge(shards: tuple[str, ...], out: str, names: tuple[str, ...], correct: bool, name: str | None) -> None:
    """Merge the per-node runs SHARDS of a multi-node job into one run.

    Device ids get the node as prefix (node1/gpu:0); the first shard is the clock reference.

    \b
    Example:
      wattprof merge runs/exp/node0 runs/exp/node1 -o runs/exp/merged
    """
    from .merge import describe, merge_runs

    result = merge_runs(list(shards), out, names=list(names) or None, correct=correct, name=name)
    click.echo(describe(result))


# ---- repair -----------------------------------------------------------------------------------------


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Repair a run recorded on another host (its recorder cannot be checked).")
@_guard
def repair(run_dir: str, force: bool) -> None:
    """Finalise a run whose recorder is gone (crashed, killed with SIGKILL, machine rebooted).

    Compacts its samples to Parquet, marks it interrupted (with an event saying why) and removes
    leftovers (.reserve, half-written .tmp files). Refused while the recorder is alive.

    \b
    Example:
      wattprof repair wattprof-runs/20261123-101500-train
    """
    from .repair import repair as do_repair

    r = do_repair(run_dir, force=force)
    for a in r.actions or ["nothing to repair"]:
        click.echo(f"wattprof: {a}", err=True)
    click.echo(f"wattprof: {run_dir}: {r.status}", err=True)


# ---- import -----------------------------------------------------------------------------------------


@main.command(name="import")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--samples", "samples", type=click.Path(dir_okay=False), help="Samples file to add.")
@click.option("--samples-format", type=click.Choice(["auto", "nvml-trace-csv", "nvidia-smi-csv", "gpm-csv",
                                                    "neuron-monitor-jsonl"]),
              default="auto", show_default=True, help="Format of --samples (auto: from the file's header).")
@click.option("--fields", help="nvidia-smi CSV without a header: the --query-gpu field list it was made with "
              "(comma-separated, e.g. timestamp,index,power.draw,utilization.gpu).")
@click.option("--utc-offset", type=float, default=0.0, show_default=True, metavar="HOURS",
              help="Time zone of printed timestamps (nvidia-smi CSV, vLLM `date`): local time = UTC + HOURS.")
@click.option("--device", default="gpu:0", show_default=True, help="Device the gpm-csv samples belong to.")
@click.option("--start", "start_s", type=float, metavar="UNIX_SECONDS",
              help="neuron-monitor log: time of its first report (default: the file's mtime is its last).")
@click.option("--steps", "steps", type=click.Path(dir_okay=False),
              help="Steps log to add: JSON lines, or a `vllm bench serve --save-result` JSON.")
@click.option("--steps-format", type=click.Choice(["auto", "jsonl", "vllm-bench", "otlp-json"]), default="auto",
              show_default=True, help="otlp-json: OpenTelemetry GenAI spans as the Collector's file exporter "
              "writes them (docs/agents.md).")
@click.option("--label", help="Label for the imported steps (vllm-bench default: serve).")
@click.option("--name", "-n", help="Run name when creating a new run.")
@click.option("--report/--no-report", "show", default=False, help="Print the text report afterwards.")
@click.option("--replace", is_flag=True, help="A steps file already imported into RUN_DIR (same content) replaces "
              "that import instead of being refused.")
@_guard
def import_(run_dir: str, samples: str | None, samples_format: str, fields: str | None, utc_offset: float,
            device: str, steps: str | None, steps_format: str, label: str | None, name: str | None,
            show: bool, replace: bool, start_s: float | None = None) -> None:
    """Create (or extend) RUN_DIR from existing logs: a samples file and/or a steps log.

    Samples: an NVML trace CSV, an nvidia-smi --query-gpu CSV (with or without header/units;
    `[N/A]` become missing), a GPM CSV, or neuron-monitor output (one JSON report per line;
    power is a labelled utilisation-based estimate). Steps: JSON lines with `t_start`, `t_end` (Unix
    seconds), optional `tokens`, `step`, and a label under `label`, `phase` or `kind`; or the JSON
    of `vllm bench serve --save-result [--save-detailed]` (one step per request when detailed,
    its clock aligned to the run's GPU activity; else one window). Import samples first.
    Repeatable on the same run to add another source.

    \b
    Examples:
      wattprof import runs/h100 --samples nvml_samples_10ms.csv --steps steps.jsonl --report
      wattprof import runs/job --samples nvidia-smi.csv --steps steps.jsonl
      wattprof import runs/job --samples smi.csv --fields timestamp,index,power.draw,utilization.gpu
      wattprof import runs/serve --samples nvml.csv --steps vllm_result.json
      wattprof import runs/agent --samples nvml.csv --steps spans.jsonl --steps-format otlp-json
      wattprof import runs/trn1 --samples neuron-monitor.jsonl --start 1764590400 --steps steps.jsonl
      wattprof import runs/serve --steps vllm_result.json --replace   # re-import a changed log
    """
    from .importer import (
        SAMPLE_FORMATS,
        ImportOptions,
        describe,
        detect_samples_format,
        import_samples,
        import_steps,
        open_or_create,
        transaction,
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
    opts = ImportOptions(fields=[f.strip() for f in fields.split(",")] if fields else None,
                         utc_offset_h=utc_offset, device=device, label=label, start_s=start_s,
                         replace=replace)
    with transaction(Path(run_dir)):  # a failed import changes no run and creates none
        writer = open_or_create(Path(run_dir), name=name)
        if samples:
            r = import_samples(writer, samples, fmt, opts)
            click.echo(f"imported samples {describe(r)}", err=True)
        if steps:
            r = import_steps(writer, steps, None if steps_format == "auto" else steps_format, opts)
            click.echo(f"imported steps {describe(r)}", err=True)
    if show:
        _print_report(run_dir, "text", None)


# ---- report -----------------------------------------------------------------------------------------


def _format_for(fmt: str | None, output: str | None) -> str:
    if fmt:
        return fmt
    ext = Path(output).suffix.lower().lstrip(".") if output else ""
    known = {"md": "markdown", "markdown": "markdown", "html": "html", "htm": "html", "json": "json",
             "txt": "text", "text": "text", "": "text"}
    if ext not in known:
        raise InputError(f"-o {output}: no report format writes .{ext} files; use .txt, .md, .html or .json, "
                         "or pass --format")
    return known[ext]


def _emit(text: str, output: str | None) -> None:
    # text no encoding can write (a lone surrogate in a label or name): shown escaped, never a crash
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wattprof: wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


def _carbon_context(region: str | None, country: str | None, intensity: float | None,
                    pue: float | None) -> tuple[Any, str | None]:
    """(carbon context or None, note): an unknown location is a usage error, never a silent default."""
    from .analysis.carbon import resolve_intensity

    if pue is not None and region is None and country is None and intensity is None:
        raise InputError("--pue needs a location: --region, --country or --intensity")
    # An unknown location is a usage error (exit 2) before anything is reported: a CI job that asked
    # for CO2 must not get a report without it and exit 0.
    flag = "--region" if region is not None else "--country" if country is not None else "--intensity"
    try:
        return resolve_intensity(region=region, country=country, intensity_g_per_kwh=intensity, pue=pue), None
    except InputError as e:
        raise InputError(f"{flag}: {e}") from None


def _print_report(run_dir: str, fmt: str | None, output: str | None, carbon: tuple[Any, str | None] = (None, None)
                  ) -> None:
    from .reports import RENDERERS
    from .reports.build import build_report
    from .run import Run

    fmt = _format_for(fmt, output)
    if fmt not in RENDERERS:
        raise InputError(f"unknown report format '{fmt}' (known: {', '.join(RENDERERS)})")
    ctx, note = carbon
    _emit(RENDERERS[fmt](build_report(Run.open(run_dir), carbon=ctx, carbon_note=note)), output)


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


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "json", "markdown", "html"]), default=None,
              help="Output format (default: from -o's extension, else text).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to a file instead of stdout.")
@carbon_options
@_guard
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
    from .repair import finalise_if_abandoned

    if (fixed := finalise_if_abandoned(run_dir, by="wattprof report")) is not None:  # as `wattprof repair` does
        click.echo(f"wattprof: the run's recorder is gone: finalised it ({'; '.join(fixed.actions)})", err=True)
    _print_report(run_dir, fmt, output, _carbon_context(region, country, intensity, pue))


# ---- compare / nightly -------------------------------------------------------------------------------------


@main.command()
@click.argument("run_a", type=click.Path())
@click.argument("run_b", type=click.Path())
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "markdown", "json", "html"]), default=None,
              help="Output format (default: from -o's extension, else text).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to a file instead of stdout.")
@carbon_options
@_guard
def compare(run_a: str, run_b: str, fmt: str | None, output: str | None, region: str | None, country: str | None,
            intensity: float | None, pue: float | None) -> None:
    """Compare two runs side by side: totals and per label energy, J/token, power, duration,
    bottleneck verdicts (and CO2 with a location), with B's change against A in percent.

    \b
    Examples:
      wattprof compare runs/monday runs/tuesday
      wattprof compare runs/a runs/b --format markdown --region aws:us-east-1
    """
    from .analysis import nightly
    from .history import load_summary
    from .reports import nightly as render

    f = _format_for(fmt, output)
    ctx, _ = _carbon_context(region, country, intensity, pue)
    a, b = load_summary(run_a), load_summary(run_b)
    sections = nightly.compare(a, b)
    if ctx is not None:
        from .analysis.carbon import co2_g

        ga, gb = co2_g(a.energy_j, ctx), co2_g(b.energy_j, ctx)
        sections["totals"].append(nightly.Side("co2e_g", ga, gb, 100 * (gb / ga - 1) if ga else None))
    if f == "json":
        text = render.compare_json(a.name, b.name, sections)
    elif f == "html":
        text = render.compare_html(a, b, sections)
    else:
        text = render.compare_text(render.run_title(a), render.run_title(b), sections, markdown=f == "markdown")
    _emit(text, output)


EXIT_REGRESSION = 1
EXIT_NOTHING = 3


@main.command()
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
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "markdown", "json", "html"]), default=None)
@click.option("--fail-on-regression", is_flag=True, help="Exit 1 when any benchmark regressed.")
@_guard
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
    from .analysis import nightly as nl
    from .history import find_runs, load_history, load_summary
    from .reports.nightly import NIGHTLY_RENDERERS, nightly_summary

    f = _format_for(fmt, output)
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
    _emit(NIGHTLY_RENDERERS[f](results, warnings), output)
    if output or f != "text":  # the verdicts always reach stdout (text already ends with them)
        click.echo(nightly_summary(results), nl=False, err=not output and f != "text")
    if fail_on_regression and any(r.change.verdict == "regression" for r in results):
        sys.exit(EXIT_REGRESSION)


# ---- export ---------------------------------------------------------------------------------------------


@main.group()
def export() -> None:
    """Export a run's results to monitoring: CloudWatch (PutMetricData) or Prometheus (textfile).

    \b
    Examples:
      wattprof export prometheus RUN --textfile /var/lib/node_exporter/textfile/wattprof.prom
      wattprof export cloudwatch RUN --namespace WattProf --aws-region us-east-1
    """


@export.command("cloudwatch")
@click.argument("run_dir", type=click.Path())
@click.option("--namespace", default="WattProf", show_default=True)
@click.option("--dimension", "dimensions", multiple=True, metavar="K=V", help="Extra dimension on every metric.")
@click.option("--tag-dimension", "tag_dims", multiple=True, metavar="TAG",
              help="Export this run tag as a dimension (only tags named here are sent).")
@click.option("--include-run-id", is_flag=True, help="Add the run id as a dimension (one metric series per run).")
@click.option("--aws-region", "aws_region", help="AWS region to send to (default: the AWS configuration's).")
@click.option("--endpoint-url", help="CloudWatch endpoint (e.g. a VPC endpoint or a local test server).")
@click.option("--profile", help="AWS profile.")
@click.option("--dry-run", is_flag=True, help="Print the metric data instead of sending it.")
@click.option("--device-dimension", type=click.Choice(["stable", "full"]), default="stable", show_default=True,
              help="Device dimension: stable (gpu:0, one series across ephemeral instances) or full (the run's id).")
@carbon_options
@_guard
def export_cloudwatch_cmd(run_dir: str, namespace: str, dimensions: tuple[str, ...], tag_dims: tuple[str, ...],
                          include_run_id: bool, aws_region: str | None, endpoint_url: str | None,
                          profile: str | None, dry_run: bool, device_dimension: str, region: str | None,
                          country: str | None, intensity: float | None, pue: float | None) -> None:
    """Put the run's results as CloudWatch metrics: energy, J/token, CO2 (with a location), average
    power per device, per label. Units are in the metric names. Needs the [aws] extra.

    \b
    Example:
      wattprof export cloudwatch runs/nightly-42 --tag-dimension model --aws-region us-east-1 --region aws:us-east-1
    """
    from .exporters.cloudwatch import build_metric_data, export_cloudwatch
    from .reports.build import build_report
    from .run import Run

    ctx, _ = _carbon_context(region, country, intensity, pue)
    rep = build_report(Run.open(run_dir), carbon=ctx)
    dims = _kv(dimensions, "--dimension")
    if dry_run:
        sanitised: list[str] = []
        data, base, skipped = build_metric_data(rep, dimensions=dims, tags=tag_dims, include_run_id=include_run_id,
                                                device_dimension=device_dimension, sanitised=sanitised)
        click.echo(json.dumps({"namespace": namespace, "dimensions": base, "metric_data": data, "skipped": skipped,
                               "sanitised": sanitised}, indent=1, default=str))
        return
    res = export_cloudwatch(rep, namespace=namespace, dimensions=dims, tags=tag_dims, include_run_id=include_run_id,
                            device_dimension=device_dimension, endpoint_url=endpoint_url, region=aws_region,
                            profile=profile)
    for note in res.sanitised:
        click.echo(f"wattprof: {note}", err=True)
    click.echo(f"wattprof: put {res.data_points} data points in {res.calls} call(s) to namespace {res.namespace}",
               err=True)


@export.command("prometheus")
@click.argument("run_dir", type=click.Path())
@click.option("--textfile", type=click.Path(dir_okay=False),
              help="Write node_exporter's textfile (atomically); without it, print the metrics.")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Export this run tag as a label.")
@click.option("--label", "labels", multiple=True, metavar="K=V", help="Extra label on every series.")
@carbon_options
@_guard
def export_prometheus_cmd(run_dir: str, textfile: str | None, tags: tuple[str, ...], labels: tuple[str, ...],
                          region: str | None, country: str | None, intensity: float | None, pue: float | None) -> None:
    """Write the run's results in Prometheus' text format (wattprof_energy_joules_total, ...).

    \b
    Example:
      wattprof export prometheus RUN --textfile /var/lib/node_exporter/textfile/wattprof.prom --tag model
    """
    from .exporters.prometheus import render_textfile, write_textfile
    from .reports.build import build_report
    from .run import Run

    ctx, _ = _carbon_context(region, country, intensity, pue)
    rep = build_report(Run.open(run_dir), carbon=ctx)
    if textfile:
        path = write_textfile(rep, textfile, tags=tags, labels=_kv(labels, "--label"))
        click.echo(f"wattprof: wrote {path}", err=True)
    else:
        click.echo(render_textfile(rep, tags=tags, labels=_kv(labels, "--label")), nl=False)


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
