"""The nightly gate as people read it: verdicts only with enough history, the summary always on
stdout, units on values, each point's run and commit, equal start times kept apart, an HTML page
up to the run report's standard (cards, units, links to each run's own report), no warnings."""

from __future__ import annotations

import json
import re

import pytest
from conftest import wattprof_in_process
from test_nightly import replay_run


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    root = tmp_path_factory.mktemp("nightly-readable")
    for day in range(5):  # four steady nights, then J/token +12 %
        replay_run(root / f"steady-{day}", "steady", day, 1.0 if day < 4 else 1 / 1.12, tags={"commit": f"c{day}abc"})
    for day in range(3):  # a young benchmark: two earlier runs only
        replay_run(root / f"young-{day}", "young", day, 1.0 if day < 2 else 1 / 1.5)
    return root


def test_a_verdict_needs_three_earlier_runs(history):
    p = wattprof_in_process("nightly", str(history), "--fail-on-regression", "-f", "json")
    assert p.returncode == 1, p.stderr  # steady regressed; young's +50 % is no verdict yet
    by = {b["benchmark"]: b for b in json.loads(p.stdout)["benchmarks"]}
    assert by["young"]["change"]["verdict"] == "insufficient-history"
    assert by["young"]["change"]["change_pct"] == pytest.approx(50, abs=1)
    assert by["steady"]["change"]["verdict"] == "regression"
    young = wattprof_in_process("nightly", str(history), "-b", "young", "--fail-on-regression")
    assert young.returncode == 0
    assert "INSUFFICIENT HISTORY young" in young.stdout and "a verdict needs 3" in young.stdout


def test_summary_on_stdout_with_units_also_when_writing_html(history, tmp_path):
    out = tmp_path / "n.html"
    p = wattprof_in_process("nightly", str(history), "-o", str(out))
    assert p.returncode == 0 and out.is_file()
    line = next(x for x in p.stdout.splitlines() if x.startswith("REGRESSION"))
    assert re.search(r"steady: j_per_token \+1[12]\.\d % \(\d+\.\d+ mJ/token, was \d+\.\d+ mJ/token: the previous run",
                     line), line
    assert "1 regression(s): steady" in p.stdout
    assert "Warning" not in p.stderr and "warn" not in p.stderr.lower()  # no matplotlib chatter
    text = wattprof_in_process("nightly", str(history)).stdout
    assert "0.0" not in re.sub(r"\d+\.\d+ ?(mJ/token|%)", "", text.split("\n\n")[0])  # no bare 0.000135 values
    assert "latest run 1970" not in text and "commit c4abc" in text


def test_each_point_says_its_run_and_commit_and_equal_start_times_stay_distinct(history, tmp_path):
    import shutil

    root = tmp_path / "h"
    shutil.copytree(history, root)
    twin = root / "steady-3b"
    shutil.copytree(root / "steady-3", twin)
    meta = json.loads((twin / "meta.json").read_text())
    meta["id"], meta["tags"]["commit"] = "twin00000000", "c3twin"
    (twin / "meta.json").write_text(json.dumps(meta))
    (twin / "summary.json").unlink()
    doc = json.loads(wattprof_in_process("nightly", str(root), "-b", "steady", "-f", "json", check=True).stdout)
    series = doc["benchmarks"][0]["series"]
    assert len(series) == 6
    assert [s["tags"]["commit"] for s in series].count("c3twin") == 1
    assert len({s["run"] for s in series}) == 6 and all(s["id"] for s in series)
    page = wattprof_in_process("nightly", str(root), "-b", "steady", "-f", "html", check=True).stdout
    assert "commit c3twin" in page and "commit c3abc" in page


@pytest.mark.chromium
@pytest.mark.parametrize("width", [800, 1280])
def test_nightly_html_has_cards_units_links_and_fits(history, tmp_path, chromium, width):
    from chromium import open_in_chromium

    wattprof_in_process("report", str(history / "steady-4"), "-o", str(history / "steady-4" / "report.html"), check=True)
    out = tmp_path / "nightly.html"
    wattprof_in_process("nightly", str(history), "-o", str(out), check=True)
    page = open_in_chromium(chromium, out, tmp_path / "profile", width=width)
    (tmp_path / f"nightly-{width}.png").write_bytes(page.screenshot)
    assert page.errors == [] and page.overflowing == [], page.overflowing
    assert "REGRESSIONS" in page.text.upper() and "mJ/token" in page.text
    assert page.svgs == 2  # one trend per benchmark, none empty
    html = out.read_text()
    assert (history / "steady-4" / "report.html").resolve().as_uri() in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)


def test_compare_html_and_names_that_say_which_run(history, tmp_path, chromium):
    from chromium import open_in_chromium

    out = tmp_path / "c.html"
    p = wattprof_in_process("compare", str(history / "steady-3"), str(history / "steady-4"), "-o", str(out))
    assert p.returncode == 0, p.stderr
    page = open_in_chromium(chromium, out, tmp_path / "profile", width=800)
    assert page.errors == [] and page.overflowing == [], page.overflowing
    assert "commit c3abc" in page.text and "commit c4abc" in page.text and "mJ/token" in page.text
