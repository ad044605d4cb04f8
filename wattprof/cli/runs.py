"""Commands that make or mend run directories: ``merge``, ``repair``, ``import``."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import InputError
from ._common import guard, print_report


@click.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Directory of the merged run (must not hold a run yet).")
@click.option("--node", "names", multiple=True,
              help="Node names in the order of SHARDS (default: each shard's `node` tag, else node0, node1, ...).")
@click.option("--correct/--no-correct", default=True, show_default=True,
              help="Shift nodes whose clock is off by more than the sampling interval onto the first node's clock.")
@click.option("--name", "-n", help="Name of the merged run.")
@guard
def merge(shards: tuple[str, ...], out: str, names: tuple[str, ...], correct: bool, name: str | None) -> None:
    """Merge the per-node runs SHARDS of a multi-node job into one run.

    Device ids get the node as prefix (node1/gpu:0); the first shard is the clock reference.

    \b
    Example:
      wattprof merge runs/exp/node0 runs/exp/node1 -o runs/exp/merged
    """
    from ..merge import describe, merge_runs

    result = merge_runs(list(shards), out, names=list(names) or None, correct=correct, name=name)
    click.echo(describe(result))


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Repair a run recorded on another host (its recorder cannot be checked).")
@guard
def repair(run_dir: str, force: bool) -> None:
    """Finalise a run whose recorder is gone (crashed, killed with SIGKILL, machine rebooted).

    Compacts its samples to Parquet, marks it interrupted (with an event saying why) and removes
    leftovers (.reserve, half-written .tmp files). Refused while the recorder is alive.

    \b
    Example:
      wattprof repair wattprof-runs/20261123-101500-train
    """
    from ..repair import repair as do_repair

    r = do_repair(run_dir, force=force)
    for a in r.actions or ["nothing to repair"]:
        click.echo(f"wattprof: {a}", err=True)
    click.echo(f"wattprof: {run_dir}: {r.status}", err=True)


@click.command(name="import")
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
@guard
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
    from ..importer import (
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
        print_report(run_dir, "text", None)
