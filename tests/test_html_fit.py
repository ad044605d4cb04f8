"""The HTML run report a person reads at 800 px and at 1280 px: no card overflows, no table is clipped
or scrolled sideways, the energy bars stay linear when idle is tiny, banners say things in words."""

from __future__ import annotations

import pytest
from conftest import H100, H100_GPM, fixture_dir, wattprof_in_process

from wattprof.reports import figures
from wattprof.reports import html as html_mod
from wattprof.reports.build import build_report
from wattprof.run import Run


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    root = tmp_path_factory.mktemp("fit")
    out = {}
    for name, fx in (("h100", fixture_dir(H100)), ("gpm", fixture_dir(H100_GPM))):
        wattprof_in_process("import", str(root / name), "--samples", str(fx / "nvml_samples_10ms.csv"), "--steps",
                 str(fx / "steps.jsonl"), check=True)
        out[name] = Run.open(root / name)
    return out


@pytest.mark.chromium
@pytest.mark.parametrize("width", [800, 1280])
@pytest.mark.parametrize("name", ["h100", "gpm"])
def test_no_overflow_in_cards_or_tables(runs, chromium, tmp_path, width, name):
    from chromium import open_in_chromium

    from wattprof.analysis.carbon import resolve_intensity

    path = tmp_path / "report.html"
    path.write_text(html_mod.render(build_report(runs[name], carbon=resolve_intensity(region="aws:us-east-1"))))
    page = open_in_chromium(chromium, path, tmp_path / "profile", width=width)
    assert page.errors == []
    assert page.overflowing == [], page.overflowing
    assert "J/step" in page.text and "mJ/token" in page.text


def axis_scales(draw) -> list[str]:
    """The x-axis scales of the figures ``draw()`` renders (read from matplotlib as it saves them)."""
    import matplotlib.figure

    seen: list[str] = []
    original = matplotlib.figure.Figure.savefig

    def probe(self, *a, **k):
        seen.extend(ax.get_xscale() for ax in self.axes)
        return original(self, *a, **k)

    matplotlib.figure.Figure.savefig = probe
    try:
        assert draw() is not None
    finally:
        matplotlib.figure.Figure.savefig = original
    return seen


def test_energy_bars_stay_linear_when_idle_is_tiny(runs):
    """Idle at 0.12 J next to kilojoules must not turn the energy axis logarithmic."""
    from dataclasses import replace

    rep = build_report(runs["h100"])
    tiny = replace(rep, idle=replace(rep.idle, energy_j=0.12))
    assert axis_scales(lambda: figures.energy_by_label(tiny)) == ["linear"]


def test_j_per_token_axis_is_linear_below_two_decades_and_log_above(runs):
    from dataclasses import replace

    rep = build_report(runs["h100"])
    vals = [lr.j_per_token for lr in rep.by_label.values() if lr.j_per_token]
    assert max(vals) / min(vals) < figures.LOG_SPAN  # 2.3 to 166 mJ/token: under two decades
    assert axis_scales(lambda: figures.j_per_token_by_label(rep)) == ["linear"]
    decode = rep.by_label["decode"]
    spread = replace(rep, by_label={**rep.by_label, "decode": replace(decode, j_per_token=decode.j_per_token * 10)})
    assert axis_scales(lambda: figures.j_per_token_by_label(spread)) == ["log"]
