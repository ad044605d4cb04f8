"""Renderers by name: what ``--format`` accepts comes from here.

Three kinds of document are rendered, each by its own set of renderers with one signature:

- ``report``: a run's :class:`~wattprof.reports.model.Report` -> ``str`` (``wattprof report``, ``demo``);
- ``nightly``: ``(results, warnings)`` of :func:`wattprof.analysis.nightly.evaluate` -> ``str``;
- ``compare``: ``(summary_a, summary_b, sections)`` of :func:`wattprof.analysis.nightly.compare` -> ``str``.

A renderer is named by ``module:function`` and imported only when used (matplotlib, for one, is
loaded by the HTML renderer alone). :func:`register` adds one (a third party's format, a
project's own); :func:`names` lists a kind's names, :func:`get_renderer` returns the callable, and
:func:`format_for_path` picks a format from an output file's extension.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError

Kind = Literal["report", "nightly", "compare"]
KINDS: tuple[Kind, ...] = ("report", "nightly", "compare")


@dataclass(frozen=True)
class Renderer:
    name: str
    kind: Kind
    target: str  # "package.module:function"
    #: output file extensions (no dot) that pick this renderer when no format is given
    suffixes: tuple[str, ...] = ()

    def load(self) -> Callable[..., str]:
        module, _, attr = self.target.partition(":")
        fn: Callable[..., str] = getattr(importlib.import_module(module), attr)
        return fn

    def __call__(self, *args: Any) -> str:
        return self.load()(*args)


_REGISTRY: dict[Kind, dict[str, Renderer]] = {k: {} for k in KINDS}


def register(renderer: Renderer) -> Renderer:
    """Add ``renderer`` (replacing one of the same kind and name)."""
    if renderer.kind not in _REGISTRY:
        raise ValueError(f"unknown renderer kind {renderer.kind!r} (known: {', '.join(KINDS)})")
    _REGISTRY[renderer.kind][renderer.name] = renderer
    return renderer


def names(kind: Kind = "report") -> list[str]:
    """The formats of ``kind``, in the order they were registered (``text`` first)."""
    return list(_REGISTRY[kind])


def get_renderer(name: str, kind: Kind = "report") -> Renderer:
    """The renderer called ``name``; an unknown name is the user's mistake (:class:`InputError`)."""
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        raise InputError(f"unknown {kind} format '{name}' (known: {', '.join(names(kind))})") from None


def format_for_path(path: str | None, kind: Kind = "report") -> str:
    """The format an output file's extension asks for (``report.md`` -> ``markdown``; none: ``text``)."""
    ext = Path(path).suffix.lower().lstrip(".") if path else ""
    if not ext:
        return "text"
    for r in _REGISTRY[kind].values():
        if ext in r.suffixes:
            return r.name
    known = [f".{r.suffixes[0]}" for r in _REGISTRY[kind].values() if r.suffixes]
    raise InputError(f"-o {path}: no {kind} format writes .{ext} files; use {', '.join(known)} "
                     "or pass --format")


class _ByName(Mapping[str, Callable[..., str]]):
    """A live, read-only ``{name: renderer}`` view of one kind (``RENDERERS["html"](report)``)."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind

    def __getitem__(self, name: str) -> Callable[..., str]:
        return _REGISTRY[self.kind][name]

    def __iter__(self) -> Iterator[str]:
        return iter(_REGISTRY[self.kind])

    def __len__(self) -> int:
        return len(_REGISTRY[self.kind])


def by_name(kind: Kind = "report") -> Mapping[str, Callable[..., str]]:
    return _ByName(kind)


_SUFFIXES = {"text": ("txt", "text"), "markdown": ("md", "markdown"), "json": ("json",), "html": ("html", "htm")}
for _name, _module, _fn in (
    ("text", "text", "render"), ("json", "json", "render"), ("markdown", "markdown", "render"),
    ("html", "html", "render"),
):
    register(Renderer(_name, "report", f"wattprof.reports.{_module}:{_fn}", _SUFFIXES[_name]))
for _name in ("text", "markdown", "json", "html"):
    register(Renderer(_name, "nightly", f"wattprof.reports.nightly:nightly_{_name}", _SUFFIXES[_name]))
    register(Renderer(_name, "compare", f"wattprof.reports.nightly:compare_{_name}", _SUFFIXES[_name]))
