"""``wattprof record -- CMD``: options -> :class:`~wattprof.options.RecordOptions`, a
:class:`~wattprof.recording.session.RecordingSession` around the command (:mod:`wattprof.recording.command`), the live
extras (status line, Prometheus metrics, OTLP receiver), and the summary at the end.

Exit status: the command's (128+N if killed by signal N, 127 not found, 126 not executable), 2 for
a usage error, 125 when the command succeeded but the run could not be finalised.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import InputError, WattprofError
from ..options import DEFAULT_INTERVAL_S
from ._common import EXIT_USAGE, EXIT_WATTPROF_FAILED, guard, kv

if TYPE_CHECKING:
    from ..recording.command import CommandResult
    from ..recording.session import RecordingSession


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Run directory (default: "
              "$WATTPROF_DIR or ./wattprof-runs, then <time>-<name>).")
@click.option("--name", "-n", help="Run name (default: the name the command's own wattprof.profile() gives, "
              "else the script's or executable's stem: `python bench.py` -> bench).")
@click.option("--collector", "-c", "collectors", multiple=True, metavar="NAME[:K=V,...]",
              help="Collector to use; repeatable (default: every available one of nvml, host). "
                   "See `wattprof collectors`.")
@click.option("--interval", "-i", type=click.FloatRange(min=0.001), default=DEFAULT_INTERVAL_S, show_default=True,
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
@guard
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
    # What the summary needs (pandas: ~1 s) is imported before the run starts, not between its
    # start and its first sample.
    from ..naming import default_run_name
    from ..options import RecordOptions
    from ..recording.session import RecordingSession
    from ..reports import text  # noqa: F401
    from ..reports.build import build_report  # noqa: F401

    if quiet and progress:
        raise InputError("--quiet and --progress contradict each other: give one of them")
    if out and (Path(out) / "meta.json").exists():
        raise InputError(f"--out {out}: already holds a run; record into a new directory "
                         "(or leave out --out for a fresh one)")
    options = RecordOptions(out=Path(out) if out else None, name=name or default_run_name(command),
                            tags=kv(tags, "--tag"), collectors=collectors or None, interval_s=interval,
                            command=command)
    session = RecordingSession(options).start()
    try:
        with ExitStack() as extras:
            env = _start_extras(extras, session, metrics_port=metrics_port, metrics_addr=metrics_addr,
                                otlp_port=otlp_port)
            # after everything that can refuse the options: a usage error stays one line
            from ..measuring import measuring_line

            click.echo(f"wattprof: {measuring_line(session.meta.get('devices') or {})}", err=True)
            if not quiet and (progress if progress is not None else sys.stderr.isatty()):
                from ..live import start_live_status

                assert session.recorder is not None
                extras.callback(start_live_status(session.recorder, session.run_dir, sys.stderr).stop)
            result = _run(session, command, env, grace, name_given=name is not None)
    except BaseException:  # wattprof's own failure: the run is finalised as failed, then it propagates
        session.stop("failed", EXIT_WATTPROF_FAILED, summary=False)
        raise
    sys.exit(_finish(session, result, quiet=quiet))


def _start_extras(extras: ExitStack, session: RecordingSession, *, metrics_port: int | None, metrics_addr: str,
                  otlp_port: int | None) -> dict[str, str]:
    """Start the metrics server and the OTLP receiver (stopped by ``extras`` when the command
    ends); the command's environment. One refusing to start (its port taken) ends the session as
    failed with exit status 2 before the command runs."""
    from ..recording.command import command_env

    env = command_env(session)
    try:
        if metrics_port is not None:
            from ..exporters.prometheus import LiveMetricsServer

            metrics = LiveMetricsServer.for_stats(session.stats, run={"run": session.meta["name"],
                                                                      "id": session.run_id})
            port = metrics.start(host=metrics_addr, port=metrics_port)
            extras.callback(metrics.stop)
            click.echo(f"wattprof: live metrics on http://{metrics_addr}:{port}/metrics", err=True)
        if otlp_port is not None:
            from ..otlp.receiver import OtlpReceiver, child_env

            receiver = OtlpReceiver(session.run_dir, port=otlp_port)
            receiver.start()
            extras.callback(_stop_receiver, receiver, session)
            click.echo(f"wattprof: receiving OTLP traces on {receiver.endpoint}", err=True)
            env = child_env(env, receiver.endpoint)
    except WattprofError:
        extras.close()
        session.stop("failed", EXIT_USAGE, summary=False)
        raise
    return env


def _stop_receiver(receiver: Any, session: RecordingSession) -> None:
    """Write the received spans' steps; a failure is an event of the run, never the command's status."""
    try:
        receiver.stop()
    except (WattprofError, OSError, ValueError) as e:
        session.event("otlp_error", f"OTLP receiver could not write its steps: {e}")


def _run(session: RecordingSession, command: tuple[str, ...], env: dict[str, str], grace: float, *,
         name_given: bool) -> CommandResult:
    """The command, run to its end, and what it said about the run's name."""
    from ..recording.command import adopt_joined_identity, run_command

    result = run_command(command, session, env=env, grace=grace)
    if result.ran:
        for note in adopt_joined_identity(session, name_given=name_given):
            click.echo(f"wattprof: note: {note}", err=True)
    else:
        click.echo(f"wattprof: error: {result.error}", err=True)
    return result


def _finish(session: RecordingSession, result: CommandResult, *, quiet: bool) -> int:
    """Finalise the run, print its summary (unless ``quiet``); the exit status."""
    done = session.stop(result.status, result.exit_code, summary=result.ran)
    rc = result.exit_code
    if done.error is not None:  # meta.json could not be written: the run reads as unfinished
        click.echo(f"wattprof: error: the run could not be finalised: {done.error}", err=True)
        if rc == 0:
            rc = EXIT_WATTPROF_FAILED
    if not result.ran:  # nothing ran: no energy report, the run is marked failed
        click.echo(f"wattprof: nothing was measured; the run (marked failed) is in {session.run_dir}", err=True)
        return rc
    if not quiet:
        from ..reports import text
        from ..reports.build import build_report

        try:
            click.echo(text.render(build_report(done.open())), err=True)
        except WattprofError as e:
            click.echo(f"wattprof: could not summarise the run: {e}", err=True)
        click.echo(f"wattprof: run saved in {session.run_dir}", err=True)
    return rc
