"""Renderers turn a :class:`~wattprof.reports.model.Report` into text, JSON, Markdown or HTML,
chosen by name from the registry (:mod:`.registry`): ``RENDERERS["markdown"](report)``, or
``get_renderer("html")(report)``. ``names()`` lists the formats ``--format`` accepts."""

from __future__ import annotations

from .registry import Renderer, by_name, format_for_path, get_renderer, names, register

#: ``{name: renderer}`` of run reports (a live view of the registry)
RENDERERS = by_name("report")

__all__ = ["RENDERERS", "Renderer", "by_name", "format_for_path", "get_renderer", "names", "register"]
