"""Renderers are looked up by name: the CLI's --format choices come from the registry, a renderer
registered from outside is used like a built-in, and verdicts reach every renderer typed."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import click
import pytest
from conftest import H100, fixture_dir, wattprof

from wattprof.cli import main
from wattprof.errors import InputError
from wattprof.reports import RENDERERS, Renderer, format_for_path, get_renderer, names, register
from wattprof.reports import format as fmt
from wattprof.reports.build import build_report
from wattprof.reports.model import BottleneckVerdict, Report, WindowVerdict
from wattprof.run import Run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("h100") / "run"
    h100 = fixture_dir(H100)
    wattprof("import", str(d), "--name", "registry", "--samples", str(h100 / "nvml_samples_10ms.csv"),
             "--steps", str(h100 / "steps.jsonl"), check=True)
    return d


@pytest.fixture(scope="module")
def report(run_dir: Path) -> Report:
    return build_report(Run.open(run_dir))


def _format_choices(command: str) -> list[str]:
    cmd = main.commands[command]
    opt = next(p for p in cmd.params if p.name == "fmt")
    assert isinstance(opt.type, click.Choice)
    return list(opt.type.choices)


def test_the_clis_format_choices_are_the_registrys_names() -> None:
    assert _format_choices("report") == names("report") == ["text", "json", "markdown", "html"]
    assert _format_choices("nightly") == names("nightly") == ["text", "markdown", "json", "html"]
    assert _format_choices("compare") == names("compare") == ["text", "markdown", "json", "html"]
    assert list(RENDERERS) == names("report")


def test_an_output_files_extension_picks_the_format_and_an_unknown_one_is_a_usage_error(run_dir: Path,
                                                                                        tmp_path: Path) -> None:
    assert format_for_path("r.md") == "markdown" and format_for_path("r.HTM") == "html"
    assert format_for_path(None) == "text" and format_for_path("report") == "text"
    with pytest.raises(InputError, match=r"no report format writes \.pdf files; use \.txt, \.json, \.md, \.html"):
        format_for_path("r.pdf")
    with pytest.raises(InputError, match="unknown report format 'pdf'"):
        get_renderer("pdf")
    p = wattprof("report", str(run_dir), "-o", str(tmp_path / "r.pdf"))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "no report format writes .pdf files" in p.stderr
    assert not (tmp_path / "r.pdf").exists()


def test_a_renderer_registered_from_outside_is_used_by_name(report: Report, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "energy_csv.py").write_text(textwrap.dedent("""
        def render(r):
            rows = [f"{lr.label},{lr.energy_j:.3f},{lr.bottleneck.title if lr.bottleneck else ''}"
                    for lr in r.by_label.values()]
            return "label,energy_j,bottleneck\\n" + "\\n".join(rows) + "\\n"
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "energy_csv", raising=False)
    try:
        register(Renderer("csv", "report", "energy_csv:render", suffixes=("csv",)))
        assert names()[-1] == "csv" and format_for_path("out.csv") == "csv"
        out = RENDERERS["csv"](report).splitlines()
        assert out[0] == "label,energy_j,bottleneck" and len(out) == 1 + len(report.by_label)
        train = next(line for line in out if line.startswith("train,"))
        assert float(train.split(",")[1]) == pytest.approx(report.by_label["train"].energy_j, abs=1e-3)
    finally:
        from wattprof.reports import registry

        registry._REGISTRY["report"].pop("csv", None)
    assert "csv" not in names()


def test_verdicts_are_typed_in_the_model_and_keep_their_json_keys(report: Report) -> None:
    verdicts = [lr.bottleneck for lr in report.by_label.values()]
    assert verdicts and all(isinstance(b, BottleneckVerdict) for b in verdicts)
    assert report.unlabelled is not None and isinstance(report.unlabelled.bottleneck, BottleneckVerdict)
    assert report.bottleneck_timeline and all(isinstance(w, WindowVerdict) for w in report.bottleneck_timeline)
    for b in verdicts:
        assert b is not None and all(type(v) is float for v in b.evidence.values())
        assert fmt.verdict_text(b) == " + ".join([b.verdict, *b.modifiers])
    doc = json.loads(get_renderer("json")(report))
    for lr in doc["by_label"].values():
        assert list(lr["bottleneck"]) == ["verdict", "modifiers", "evidence", "suggestion", "basis", "reason"]
    assert list(doc["bottleneck_timeline"][0]) == ["t_start", "t_end", "verdict", "modifiers"]
    assert fmt.verdict_text(None) == "-" and fmt.evidence_items(None) == [] and fmt.suggestion_text(None) == ""
