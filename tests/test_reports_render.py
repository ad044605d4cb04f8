"""The reports people read: markdown for pull requests, one self-contained HTML file, the text report.

The reports are built from the real H100 capture imported through the CLI; the HTML page is opened in
a real headless Chromium driven over the DevTools protocol (``--remote-debugging-pipe``: stdlib only).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from chromium import Page, open_in_chromium
from conftest import H100, H100_SERVE, fixture_dir, wattprof_in_process
from PIL import Image

from wattprof.analysis.carbon import resolve_intensity
from wattprof.reports import RENDERERS, figures
from wattprof.reports import format as fmt
from wattprof.reports import html as html_mod
from wattprof.reports import markdown as md
from wattprof.reports import tables as tables_mod
from wattprof.reports import text as text_mod
from wattprof.reports.build import build_report
from wattprof.reports.model import Report
from wattprof.run import Run

HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_LABEL = "a|b `c` <script>alert(1)</script> $5 *x*\nnext"
LABELS = ["train", "train_stalled", "membound", "decode"]


def _import(tmp: Path, name: str, steps: Path) -> Run:
    h100 = fixture_dir(H100)
    wattprof_in_process("import", str(tmp), "--name", name, "--samples", str(h100 / "nvml_samples_10ms.csv"),
             "--steps", str(steps), check=True)
    return Run.open(tmp)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    run = _import(tmp_path_factory.mktemp("h100") / "run", "h100-demo", fixture_dir(H100) / "steps.jsonl")
    return build_report(run, carbon=resolve_intensity(region="aws:us-east-1"))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """The H100 run named ``<script>alert(1)</script>``, its ``train`` label renamed to a hostile string."""
    d = tmp_path_factory.mktemp("hostile")
    lines = []
    for line in (fixture_dir(H100) / "steps.jsonl").read_text().splitlines():
        step = json.loads(line)
        if step["phase"] == "train":
            step["phase"] = HOSTILE_LABEL
        lines.append(json.dumps(step))
    (d / "steps.jsonl").write_text("\n".join(lines) + "\n")
    run = _import(d / "run", HOSTILE_NAME, d / "steps.jsonl")
    return build_report(run, carbon=resolve_intensity(region="aws:us-east-1"))


# ---------------------------------------------------------------- markdown

def _cells(row: str) -> list[str]:
    """Cells of a GFM table row: split on pipes not escaped by a backslash."""
    assert row.startswith("|") and row.endswith("|"), row
    return [c.strip() for c in re.split(r"(?<!\\)\|", row[1:-1])]


def md_tables(text: str) -> list[list[list[str]]]:
    """Every table of a markdown text as rows of cells; asserts the GFM shape as it goes."""
    tables, block = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            assert len(block) >= 2, block
            assert re.fullmatch(r"\|(\s*:?-{3,}:?\s*\|)+", block[1]), f"no header separator: {block[1]}"
            rows = [_cells(r) for i, r in enumerate(block) if i != 1]
            widths = {len(r) for r in rows} | {len(_cells(block[1]))}
            assert len(widths) == 1, f"ragged table: {block}"
            tables.append(rows)
            block = []
    return tables


def table_with(tables: list[list[list[str]]], header: list[str]) -> list[list[str]]:
    return next(t for t in tables if t[0] == header)


def label_header(report: Report) -> list[str]:
    """The label table's header: each column's unit in its name (chosen from the column's values)."""
    return [h.replace("\n", " ") for h in tables_mod.label_table(report, idle=True, bottleneck=True)[0]]


def number(cell: str, unit_header: str) -> float:
    """A cell's value in joules (or J/token, J/step), from the unit its column's header names."""
    unit = unit_header.rsplit("(", 1)[1].rstrip(")").split("/")[0]
    scale = {"kWh": 3.6e6, "kJ": 1e3, "J": 1.0, "mJ": 1e-3, "µJ": 1e-6}[unit]
    return float(cell.replace(",", "")) * scale


def test_markdown_tables_parse_and_carry_the_numbers(report: Report) -> None:
    out = md.render(report)
    tables = md_tables(out)
    assert len(tables) >= 6
    by_label = {md.escape(lr.label): lr for lr in report.by_label.values()}
    header = label_header(report)
    assert header[8].startswith("energy (") and header[8].endswith("J/step)")
    assert header[9].endswith("J/token)") and header[10] == "power (W)"
    rows = table_with(tables, header)[1:]
    assert [r[0] for r in rows] == [md.escape(x) for x in LABELS] + [md.escape(tables_mod.UNLABELLED_ROW),
                                                                      md.escape(tables_mod.IDLE_ROW)]
    for row in rows[:-2]:
        lr = by_label[row[0]]
        assert number(row[1], header[1]) == pytest.approx(lr.energy_j, rel=5e-3)
        assert row[6] == f"{lr.steps:,}"
        assert number(row[8], header[8]) == pytest.approx(lr.energy_j / lr.steps, rel=5e-3)
        if lr.j_per_token is not None:
            assert number(row[9], header[9]) == pytest.approx(lr.j_per_token, rel=1e-2)
        assert row[11] == fmt.verdict_text(lr.bottleneck)
    assert number(rows[-2][1], header[1]) == pytest.approx(report.unlabelled.energy_j, rel=5e-3)
    assert number(rows[-1][1], header[1]) == pytest.approx(report.idle.energy_j, rel=5e-3)
    decode = next(r for r in rows if r[0] == "decode")
    assert decode[11] == "compute-bound + power-capped"
    summary = dict((r[0], r[1]) for r in table_with(tables, ["", "value"])[1:])
    assert summary["Energy"] == fmt.fmt_j(report.energy_j)
    assert summary["Boundary"] == "GPU only (1 device)"
    assert summary["Energy source"].startswith("counter (hardware energy counter)")
    assert summary["Tokens"] == "6,344,768"
    # bottleneck evidence and suggestion per label (and idle)
    bn = table_with(tables, ["label", "verdict", "why", "evidence", "suggestion"])[1:]
    assert len(bn) == 5
    stalled = next(r for r in bn if r[0] == md.escape("train_stalled"))
    assert stalled[1] == "host-bound" and "between steps" in stalled[3]
    assert "num\\_workers" in stalled[4]


def test_markdown_co2_section_or_its_note(report: Report) -> None:
    out = md.render(report)
    c = report.carbon
    assert c is not None
    co2 = [t for t in md_tables(out) if t[0] == ["", "value"]][1]
    rows = dict((r[0], r[1]) for r in co2[1:])
    assert rows["Location"] == md.escape(c.location)
    assert f"{c.intensity_g_per_kwh:.1f} g CO2e/kWh" in rows["Grid intensity"] and "year 2023" in rows["Grid intensity"]
    assert rows["PUE"] == md.escape(f"{c.pue:g} ({c.pue_source})")
    assert rows["Per million tokens"] == fmt.fmt_co2(c.g_co2e_per_million_tokens)
    assert "EPA" in rows["Car equivalent"] and "location-based" in rows["CO2e"]
    per_label = table_with(md_tables(out), ["label", "CO2e", "share"])
    assert len(per_label) == 1 + len(LABELS)
    none = md.render(replace(report, carbon=None, carbon_note="no location known: CO2 not computed"))
    assert "> no location known: CO2 not computed" in none
    assert "Grid intensity" not in none


def test_markdown_escapes_a_hostile_run_name_and_label(hostile: Report) -> None:
    from markdown_it import MarkdownIt

    out = md.render(hostile)
    assert HOSTILE_NAME not in out and "<script" not in out
    rows = table_with(md_tables(out), label_header(hostile))
    assert len(rows) == 1 + len(LABELS) + 2  # the pipe, backticks and newline did not split or add rows
    # as GitHub would show it: tables intact, the strings as text, no script element
    page = MarkdownIt("commonmark", {"html": True}).enable("table").render(out)
    assert "<script" not in page
    cells = _TagText.collect(page, "td")
    assert " ".join(HOSTILE_LABEL.split()) in cells
    assert any(c.startswith(HOSTILE_NAME) for c in cells)
    first_table_rows = page.split("</table>")[2].count("<tr>")
    assert first_table_rows == 1 + len(LABELS) + 2


class _TagText(HTMLParser):
    """Text content of every element of one tag name (also counts tags)."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag, self.depth, self.texts, self.tags = tag, 0, [], []
        self._buf: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == self.tag:
            self.depth += 1
            self._buf = []

    def handle_endtag(self, tag: str) -> None:
        if tag == self.tag and self.depth:
            self.depth -= 1
            self.texts.append(" ".join("".join(self._buf).split()))

    def handle_data(self, data: str) -> None:
        if self.depth:
            self._buf.append(data)

    @classmethod
    def collect(cls, page: str, tag: str) -> list[str]:
        p = cls(tag)
        p.feed(page)
        return p.texts


# ---------------------------------------------------------------- text

def test_text_report_shows_wasted_energy_suggestions_and_co2(report: Report) -> None:
    out = text_mod.render(report)
    w = report.wasted
    assert w is not None
    assert f"Wasted energy (accelerators waiting): {fmt.fmt_j(w.total_j)} = {100 * w.share:.1f}%" in out
    flat = " ".join(out.split())  # suggestions are wrapped to the width, never cut
    for lr in report.by_label.values():
        b = lr.bottleneck
        assert b is not None
        assert fmt.suggestion_text(b) in flat
        assert " ".join(b.suggestion.split()[-6:]) in flat
    assert max(len(x) for x in out.splitlines()) <= text_mod.terminal_width()
    assert "CO2 (location-based): 2.02 g CO2e" in out
    assert "USA/virginia (aws:us-east-1)" in out and "PUE 1.15" in out
    none = text_mod.render(replace(report, carbon=None, carbon_note="no location known: CO2 not computed"))
    assert "CO2: no location known: CO2 not computed" in none


def test_renderers_are_registered_and_imported_lazily(report: Report) -> None:
    assert RENDERERS["markdown"](report) == md.render(report)
    assert RENDERERS["html"](report).startswith("<!DOCTYPE html>")
    code = ("import sys, wattprof.reports as r; assert {'markdown', 'html'} <= set(r.RENDERERS); "
            "bad = [m for m in ('matplotlib', 'wattprof.reports.html', 'wattprof.reports.markdown', "
            "'wattprof.reports.figures') if m in sys.modules]; assert not bad, bad")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


# ---------------------------------------------------------------- figures

def _near(im: Image.Image, rgb: tuple[int, int, int], tol: int = 8) -> int:
    """How many pixels of ``im`` are within ``tol`` of ``rgb`` on every channel."""
    px = np.asarray(im.convert("RGB"), dtype=np.int16)
    return int((np.abs(px - np.array(rgb, dtype=np.int16)) <= tol).all(axis=-1).sum())


def _hex(c: str, alpha: float = 1.0) -> tuple[int, int, int]:
    rgb = [int(c[i:i + 2], 16) for i in (1, 3, 5)]
    return tuple(round(alpha * v + (1 - alpha) * 255) for v in rgb)  # type: ignore[return-value]


def test_power_timeline_shades_each_label_and_draws_the_limit(report: Report) -> None:
    png = figures.power_timeline(report)
    assert png is not None and png == figures.power_timeline(report)  # reproducible bytes
    im = Image.open(io.BytesIO(png))
    assert im.width >= 1000
    colors = figures.label_colors(report)
    assert len(set(colors.values())) == len(colors) == len(LABELS)
    for label in LABELS:
        assert _near(im, _hex(colors[label], 0.22)) > 2000, f"no shading for {label}"
    assert _near(im, _hex(figures.LIMIT_COLOR), tol=30) > 200, "no power-limit line"
    assert b"Software" not in png and b"matplotlib" not in png


def test_bar_figures(report: Report) -> None:
    energy = Image.open(io.BytesIO(figures.energy_by_label(report) or b""))
    colors = figures.label_colors(report)
    for label in LABELS:
        assert _near(energy, _hex(colors[label]), tol=2) > 500
    assert _near(energy, _hex(figures.IDLE_COLOR), tol=2) > 200, "idle has no bar"
    jpt = Image.open(io.BytesIO(figures.j_per_token_by_label(report) or b""))
    with_tokens = [lab for lab in LABELS if report.by_label[lab].tokens]
    assert with_tokens == ["train", "train_stalled", "decode"]
    assert _near(jpt, _hex(colors["membound"]), tol=2) == 0
    for label in with_tokens:
        assert _near(jpt, _hex(colors[label]), tol=2) > 200
    no_tokens = {k: replace(v, tokens=None, j_per_token=None) for k, v in report.by_label.items()}
    assert figures.j_per_token_by_label(replace(report, by_label=no_tokens)) is None


def test_figures_draw_hostile_labels_without_pyplot(hostile: Report) -> None:
    code = ("import sys, pickle; from wattprof.reports import figures; r = pickle.load(sys.stdin.buffer); "
            "out = [figures.power_timeline(r), figures.energy_by_label(r), figures.j_per_token_by_label(r)]; "
            "assert all(o and o.startswith(b'\\x89PNG') for o in out); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'")
    import pickle

    p = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(hostile), capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()


# ---------------------------------------------------------------- HTML

_URL_ATTR = re.compile(r"""\b(?:src|href|action|poster|data|srcset|formaction)\s*=\s*["']?([^"'\s>]*)""", re.I)


def test_html_is_self_contained(report: Report) -> None:
    page = html_mod.render(report)
    urls = _URL_ATTR.findall(page)
    assert len(urls) == 3
    assert all(u.startswith("data:") or u.startswith("#") for u in urls), [u[:60] for u in urls]
    assert not re.search(r"url\(\s*['\"]?(?!data:)", page), "CSS loads a url()"
    for bad in ("@import", "<script", "<link", "<iframe", "<object", "<embed", "http://", "https://"):
        assert bad not in page.lower(), bad
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for uri in re.findall(r'src="(data:image/png;base64,[^"]+)"', page):
        im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        assert im.format == "PNG" and im.width > 500


def test_html_says_energy_boundary_source_bottlenecks_and_co2(report: Report) -> None:
    page = html_mod.render(report)
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    assert "Boundary: GPU only (1 device) · Energy source: counter (hardware energy counter), measured" in text
    assert fmt.fmt_j(report.energy_j) in text and "3.37 mJ/token" in text
    cells = _TagText.collect(page, "td")
    for lr in report.by_label.values():
        assert lr.label in cells
        assert fmt.suggestion_text(lr.bottleneck) in cells
    assert "USA/virginia (aws:us-east-1)" in cells
    assert any("AWS-reported" in c for c in cells) and any("EPA-420-F-23-014" in c for c in cells)
    assert any("NVIDIA H100 80GB HBM3" in c for c in cells)
    assert "power-capped" in text and "Power over time" in text
    note = html_mod.render(replace(report, carbon=None, carbon_note="no location known: CO2 not computed"))
    assert "no location known: CO2 not computed" in note and "Grid intensity" not in note


def test_html_escapes_a_hostile_run_name_and_label(hostile: Report) -> None:
    page = html_mod.render(hostile)
    assert HOSTILE_NAME not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    p = _TagText("h1")
    p.feed(page)
    assert "script" not in p.tags
    assert p.texts == [HOSTILE_NAME]
    assert " ".join(HOSTILE_LABEL.split()) in _TagText.collect(page, "td")


@pytest.fixture(scope="module")
def hostile_page(chromium: str, hostile: Report, tmp_path_factory: pytest.TempPathFactory) -> Page:
    d = tmp_path_factory.mktemp("chromium")
    path = d / "report.html"
    path.write_text(html_mod.render(hostile), encoding="utf-8")
    page = open_in_chromium(chromium, path, d / "profile")
    (d / "report.png").write_bytes(page.screenshot)
    shots = os.environ.get("WATTPROF_SCREENSHOTS")  # keep the screenshot to look at it
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        (Path(shots) / "report.png").write_bytes(page.screenshot)
    return page


@pytest.mark.chromium
def test_chromium_renders_the_report_without_errors_or_network(hostile_page: Page, hostile: Report) -> None:
    assert hostile_page.errors == []
    assert hostile_page.of("Page.javascriptDialogOpening") == []
    assert hostile_page.scripts == 0
    others = [u[:80] for u in hostile_page.requests if not (u.startswith("file://") or u.startswith("data:"))]
    assert others == [], "the page asked the network"
    assert len(hostile_page.images) == 3 and all(w > 500 for w in hostile_page.images), hostile_page.images
    for needle in ("Power over time", "Energy by label", "Bottlenecks", "Wasted energy", "CO2", "Devices",
                   "Boundary:", "GPU only (1 device)", "Energy source:", fmt.fmt_j(hostile.energy_j)):
        assert needle in hostile_page.text, needle


@pytest.mark.chromium
def test_chromium_shows_a_hostile_run_name_as_text(hostile_page: Page) -> None:
    lines = hostile_page.text.splitlines()
    assert HOSTILE_NAME in lines  # the h1: the name itself, as text
    assert " ".join(HOSTILE_LABEL.split()) in hostile_page.text


@pytest.mark.chromium
def test_chromium_screenshot_is_a_real_page(hostile_page: Page) -> None:
    im = Image.open(io.BytesIO(hostile_page.screenshot)).convert("RGB")
    assert im.width == 1280 and im.height > 2500
    colors = im.getcolors(maxcolors=1 << 24) or []
    assert len(colors) > 500, "screenshot has almost no colours"
    background = max(colors)[0]
    assert 1 - background / (im.width * im.height) > 0.15, "screenshot is mostly blank"


@pytest.mark.chromium
def test_chromium_harness_sees_scripts_errors_and_requests(chromium: str, tmp_path: Path) -> None:
    """The checks above can fail: a page that runs a script, throws and fetches is caught on all three."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p>bad</p><script>alert(1)</script>"
                   "<script>throw new Error('boom')</script><img src='http://example.invalid/x.png'></body></html>")
    page = open_in_chromium(chromium, bad, tmp_path / "profile")
    assert page.of("Page.javascriptDialogOpening"), "alert() not seen"
    assert any("boom" in e for e in page.errors), page.errors
    assert "http://example.invalid/x.png" in page.requests


def test_renderers_cope_with_a_bare_estimated_multi_device_report(report: Report) -> None:
    """No labels, no CO2, no bottlenecks, an estimate, two devices: every renderer still says what it knows."""
    two = [report.timeline[0], replace(report.timeline[0], device="gpu:1", power_limit_w=None)]
    bare = replace(report, by_label={}, segments=[], wasted=None, carbon=None, carbon_note="no location known",
                   estimated=True, idle=replace(report.idle, bottleneck=None), timeline=two,
                   flags=["some accelerators have only estimated power"])
    png = figures.power_timeline(bare)
    assert png is not None and Image.open(io.BytesIO(png)).height > 400
    assert figures.j_per_token_by_label(bare) is None
    page = html_mod.render(bare)
    assert page.count("<img ") == 1 and "ESTIMATE" in page and "no location known" in page
    assert "some accelerators have only estimated power" in page
    out = md.render(bare)
    md_tables(out)
    assert "**ESTIMATE**" in out and "> no location known" in out and "## Energy by label" not in out
    assert "no location known" in text_mod.render(bare)
    empty = replace(bare, timeline=[], devices=[])
    assert figures.power_timeline(empty) is None and "Power over time" not in html_mod.render(empty)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Report:
    d = fixture_dir(H100_SERVE)
    run = tmp_path_factory.mktemp("serve") / "run"
    wattprof_in_process("import", str(run), "--samples", str(d / "nvml_samples_10ms.csv"), "--steps",
             str(d / "vllm_bench_detailed.json"), check=True)
    return build_report(Run.open(run))


def test_inference_self_check_and_import_flags_in_every_format(serve: Report) -> None:
    lr = serve.by_label["serve"]
    gpu = serve.devices[0]
    assert lr.output_tokens and gpu.self_check
    check = fmt.self_check_text(gpu) or ""
    assert check.startswith("self-check gpu:0: counter") and "instant power" in check and "%" in check
    headers, _ = tables_mod.inference_table(serve, steady=True)
    headers = [h.replace("\n", " ") for h in headers]
    assert headers[4] == "energy (J/output token)" and headers[5] == "energy (J/request)"
    row = ["serve", str(lr.steps), fmt.fmt_num(lr.prompt_tokens, "", 0), fmt.fmt_num(lr.output_tokens, "", 0),
           f"{lr.j_per_output_token:.2f}", f"{lr.j_per_request:.1f}", lr.steady_state_note]
    assert table_with(md_tables(md.render(serve)), headers)[1:] == [[md.escape(c) for c in row]]
    page = html_mod.render(serve)
    cells = _TagText.collect(page, "td")
    assert all(c in cells for c in row[1:])
    for out in (md.render(serve), page, text_mod.render(serve)):
        plain = html.unescape(out).replace("\\", "")
        assert check in plain
        assert "requests overlap (up to 8 in flight)" in plain
