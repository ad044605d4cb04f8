"""Renderers turn a :class:`~wattprof.reports.model.Report` into text, JSON, ... chosen by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import Report


def _text(r: Report) -> str:
    from . import text

    return text.render(r)


def _json(r: Report) -> str:
    from . import json

    return json.render(r)


def _markdown(r: Report) -> str:
    from . import markdown

    return markdown.render(r)


def _html(r: Report) -> str:
    from . import html

    return html.render(r)


RENDERERS: dict[str, Callable[[Report], str]] = {"text": _text, "json": _json, "markdown": _markdown,
                                                  "html": _html}
