"""Property: whatever a run's name, tags and labels are, the Markdown and HTML reports show them as
text. They cannot add an element or attribute to the page, break a table, or leave the text out.
(The example-based and Chromium checks are in tests/test_reports_render.py.)"""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser

import pytest
from fuzzkit import CI_EXAMPLES, fuzz_settings, run_templates
from hypothesis import example, given
from hypothesis import strategies as st

from wattprof.reports import RENDERERS
from wattprof.reports.build import build_report
from wattprof.reports.model import Report
from wattprof.run import Run

HOSTILE = st.one_of(
    st.text(min_size=1, max_size=40),
    st.lists(st.sampled_from(["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "|", "`", "```",
                              "\\", "*", "_", "[x](javascript:alert(1))", "<!--", "-->", "&amp;", "&#60;", '"',
                              "'", "\n", "\r", "# h", "<br>", "</td>", "]]>", "{{x}}", "\u202e", "\x00", "a"]),
             min_size=1, max_size=8).map("".join),
)


@pytest.fixture(scope="module")
def base() -> Report:
    return build_report(Run.open(run_templates()["final"]))


def hostile_report(base: Report, name: str, tag: str, label: str) -> Report:
    """``base`` with its run name, a tag (key and value) and its ``train`` label replaced."""
    r = copy.deepcopy(base)
    r.run["name"] = name
    r.run["tags"] = {tag: tag, "k": tag}
    lr = r.by_label.pop("train")
    lr.label = label
    r.by_label = {label: lr, **{k: v for k, v in r.by_label.items() if k != label}}
    for s in r.segments:
        if s.label == "train":
            s.label = label
    return r


def visible(text: str) -> str:
    """What a reader sees of a string: whitespace runs as one space; control characters, and the
    U+FFFD that CommonMark puts in place of NUL, aside."""
    return " ".join("".join(ch for ch in text if (ch.isprintable() or ch.isspace()) and ch != "\ufffd").split())


class Structure(HTMLParser):
    """The elements and attribute names of a page, in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[str, ...]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, tuple(a for a, _ in attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @classmethod
    def of(cls, page: str) -> Structure:
        p = cls()
        p.feed(page)
        p.close()
        return p


@fuzz_settings(CI_EXAMPLES)
@given(name=HOSTILE, tag=HOSTILE, label=HOSTILE)
@example(name="<script>alert(1)</script>", tag="a|b`c", label="x\n| y | z |")
def test_markdown_shows_names_tags_and_labels_as_text(base, name, tag, label):
    """Guarantee: in the Markdown report a hostile run name, tag or label neither adds an HTML
    element once rendered (as GitHub would: CommonMark with HTML, GFM tables), nor adds or
    splits a table row, and its text is shown."""
    from markdown_it import MarkdownIt

    if label in base.by_label:
        label = label + "!"
    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    ref = md.render(RENDERERS["markdown"](base))
    out = RENDERERS["markdown"](hostile_report(base, name, tag, label))
    page = md.render(out)
    got, want = Structure.of(page), Structure.of(ref)
    assert [t for t, _ in got.tags] == [t for t, _ in want.tags], "the page's elements changed"
    shown = visible(" ".join(got.text)).replace("\\", "")
    for s in (name, label):
        v = visible(s).replace("\\", "")
        if v:
            assert v in shown, v


@pytest.mark.filterwarnings("ignore:Glyph .* missing from font")  # the plots' font; not what is tested here
@fuzz_settings(max(CI_EXAMPLES // 8, 10))
@given(name=HOSTILE, tag=HOSTILE, label=HOSTILE)
@example(name="<script>alert(1)</script>", tag='" onmouseover="alert(1)', label="</td><td>x")
def test_html_shows_names_tags_and_labels_as_text(base, name, tag, label):
    """Guarantee: in the HTML report a hostile run name, tag or label adds no element and no
    attribute to the page (every value is escaped, quotes included), and its text is shown."""
    if label in base.by_label:
        label = label + "!"
    ref = Structure.of(RENDERERS["html"](base))
    page = RENDERERS["html"](hostile_report(base, name, tag, label))
    got = Structure.of(page)
    assert got.tags == ref.tags, "the page's elements or attributes changed"
    assert not re.search(r"<script(?![^>]*\bnonce=)", page.replace("<script>alert(1)</script>", ""))
    shown = visible(" ".join(got.text))
    for s in (name, label):
        v = visible(s)
        if v:
            assert v in shown, v
