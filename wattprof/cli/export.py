"""``wattprof export cloudwatch|prometheus``: a run's results to monitoring."""

from __future__ import annotations

import json

import click

from ._common import carbon_context, carbon_options, guard, kv


@click.group()
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
@guard
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
    from ..exporters.cloudwatch import build_metric_data, export_cloudwatch
    from ..reports.build import build_report
    from ..run import Run

    ctx, _ = carbon_context(region, country, intensity, pue)
    rep = build_report(Run.open(run_dir), carbon=ctx)
    dims = kv(dimensions, "--dimension")
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
@guard
def export_prometheus_cmd(run_dir: str, textfile: str | None, tags: tuple[str, ...], labels: tuple[str, ...],
                          region: str | None, country: str | None, intensity: float | None, pue: float | None) -> None:
    """Write the run's results in Prometheus' text format (wattprof_energy_joules_total, ...).

    \b
    Example:
      wattprof export prometheus RUN --textfile /var/lib/node_exporter/textfile/wattprof.prom --tag model
    """
    from ..exporters.prometheus import render_textfile, write_textfile
    from ..reports.build import build_report
    from ..run import Run

    ctx, _ = carbon_context(region, country, intensity, pue)
    rep = build_report(Run.open(run_dir), carbon=ctx)
    if textfile:
        path = write_textfile(rep, textfile, tags=tags, labels=kv(labels, "--label"))
        click.echo(f"wattprof: wrote {path}", err=True)
    else:
        click.echo(render_textfile(rep, tags=tags, labels=kv(labels, "--label")), nl=False)
