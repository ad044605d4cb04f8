"""What the reports say about agent tasks and models, and the nightly gate on J per task."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import H100_SERVE, fixture_dir, wattprof_in_process
from otlpkit import serve_tasks, write_lines

from wattprof.importer import import_samples, import_steps, open_or_create
from wattprof.reports.summary import write_summary
from wattprof.run import RunWriter

REQS: list[dict] = []


def _requests() -> list[dict]:
    if not REQS:
        d = fixture_dir(H100_SERVE)
        REQS.extend(json.loads(x) for x in (d / "requests_wallclock.jsonl").read_text().splitlines() if x.strip())
    return REQS


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The serving capture's samples, no steps yet."""
    run = tmp_path_factory.mktemp("agents") / "base"
    w = open_or_create(run, name="agent-eval")
    import_samples(w, fixture_dir(H100_SERVE) / "nvml_samples_10ms.csv")
    return run


def with_tasks(base: Path, out: Path, per_task: int, started_at: float | None = None) -> Path:
    shutil.copytree(base, out)
    w = RunWriter.open_existing(out)
    if started_at is not None:
        w.meta["started_at"] = started_at
        w.meta["tags"] = {"benchmark": "agent-eval"}
        w.write_meta()
    spans = write_lines(out.parent / f"{out.name}-spans.jsonl", serve_tasks(_requests(), per_task))
    import_steps(w, spans)
    return out


@pytest.fixture(scope="module")
def run(base: Path, tmp_path_factory) -> Path:
    return with_tasks(base, tmp_path_factory.mktemp("agents-run") / "run", 2)


def test_text_report_has_tasks_and_models(run: Path) -> None:
    out = wattprof_in_process("report", str(run), check=True).stdout
    assert "Energy per agent task (top 10 of 13, costliest first)" in out
    assert "Energy per model" in out and "gpt2-24l" in out
    assert "rule: equal share among the model calls in flight" in out
    assert "GenAI semantic conventions gen_ai 1.37.0" in out
    assert "CO2e per task: not computed (no location given)" in out
    assert "Costliest model calls" in out


def test_json_tasks_carry_co2_with_its_location(run: Path) -> None:
    doc = json.loads(wattprof_in_process("report", str(run), "-f", "json", "--country", "FRA", check=True).stdout)
    t = doc["tasks"][0]
    for k in ("id", "name", "energy_j", "duration_s", "llm_calls", "tool_calls", "input_tokens", "output_tokens",
              "j_per_output_token", "g_co2e", "co2_location"):
        assert k in t
    assert t["g_co2e"] > 0 and "FRA" in t["co2_location"]
    assert t["j_per_output_token"] == pytest.approx(t["energy_j"] / t["output_tokens"])
    energies = [x["energy_j"] for x in doc["tasks"]]
    assert energies == sorted(energies, reverse=True)
    assert sum(energies) == pytest.approx(doc["agents"]["energy_j"], rel=1e-9)
    plain = json.loads(wattprof_in_process("report", str(run), "-f", "json", check=True).stdout)
    assert plain["tasks"][0]["g_co2e"] is None and plain["tasks"][0]["co2_location"] is None


def test_markdown_report_sections(run: Path) -> None:
    md = wattprof_in_process("report", str(run), "-f", "markdown", check=True).stdout
    assert "## Energy per agent task" in md and "## Energy per model" in md
    assert "| task0 |" in md


@pytest.mark.chromium
def test_html_report_shows_tasks_in_chromium(run: Path, tmp_path: Path, chromium: str) -> None:
    from chromium import open_in_chromium

    out = tmp_path / "r.html"
    wattprof_in_process("report", str(run), "-o", str(out), check=True)
    page = open_in_chromium(chromium, out, tmp_path / "profile")
    assert page.errors == [] and page.scripts == 0
    assert "Energy per agent task" in page.text and "Energy per model" in page.text and "task0" in page.text


def test_nightly_gates_on_j_per_task(base: Path, tmp_path: Path) -> None:
    for night in range(5):
        with_tasks(base, tmp_path / "h" / f"n{night}", 2, started_at=1.79e9 + night * 86400)
    # the last night groups 3 requests per task: each task costs about half as much again
    with_tasks(base, tmp_path / "h" / "n5", 3, started_at=1.79e9 + 5 * 86400)
    for p in (tmp_path / "h").iterdir():
        if p.is_dir():
            write_summary(p)
    p = wattprof_in_process("nightly", str(tmp_path / "h"), "--metric", "j_per_task", "-f", "json", "--fail-on-regression")
    assert p.returncode == 1, p.stderr
    doc = json.loads(p.stdout)
    assert doc["regressions"] == ["agent-eval"]
    assert doc["benchmarks"][0]["change"]["change_pct"] > 20
    # the joules of the run did not change
    p = wattprof_in_process("nightly", str(tmp_path / "h"), "--metric", "energy_j", "-f", "json", "--fail-on-regression")
    assert p.returncode == 0, p.stdout
