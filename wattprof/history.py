"""A history of runs: found under a directory (or listed), each summarised in a small file.

This module does the summaries' I/O and the discovery of runs only; what a summary holds and how
it is computed from a run live beside the report model (:mod:`wattprof.reports.summary`).

Each run gets ``summary.json`` when it is finalised (and whenever it is missing or older than the
run's ``meta.json``), so reading a thousand runs' summaries takes a fraction of a second instead of
a thousand reports. A stored summary is *current* when it is at least as new as ``meta.json`` and
of :data:`SUMMARY_VERSION`.

A directory of runs also keeps a cache of its runs' current summaries (:data:`CACHE`, one
append-only file), so that ``nightly`` over 10,000 runs reads one file instead of 10,000. An entry is used only while
the run's ``meta.json`` and ``summary.json`` have exactly the size, modification and change times
and inode it was made from (a run changed in any way is read again, never served stale; files
changed in the last :data:`RACY_NS` are not cached at all, so that a change within the same
timestamp tick cannot go unseen); a
cache that cannot be read is ignored and one that cannot be written (a read-only directory) is
not written: it is never needed for correct results.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InputError, RunError
from .run import META, write_bytes_atomic, write_json_atomic
from .run.durable import write_all

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
SUMMARY_VERSION = 2
#: the summaries cache of a directory of runs (hidden; a query engine's ``**/summary.json`` skips it)
CACHE = ".wattprof-summaries.jsonl"
CACHE_VERSION = 1
#: A file modified this recently (ns) is not cached: a change later in the same timestamp tick
#: could leave its size and times as they are (git's "racily clean" rule).
RACY_NS = 2 * 10**9

#: what identifies a file's content without reading it: (mtime_ns, ctime_ns, size, inode)
Signature = tuple[int, int, int, int]


def _signature(path: Path | str) -> Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


def _current(summary: Signature | None, meta: Signature | None) -> bool:
    return summary is not None and meta is not None and summary[0] >= meta[0]


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        d = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None
    return d if isinstance(d, dict) and d.get("version") == SUMMARY_VERSION else None


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The stored form of the run's summary when it is current (``path`` set to ``run_dir``),
    else None (missing, older than ``meta.json``, of another version or damaged)."""
    if not _current(_signature(run_dir / SUMMARY), _signature(run_dir / META)):
        return None
    return _read_file(str(run_dir))


def _read_file(run_dir: str) -> dict[str, Any] | None:
    try:
        with open(f"{run_dir}/{SUMMARY}", "rb") as fh:
            d = _parse(fh.read())
    except OSError:
        return None
    if d is not None:
        d["path"] = run_dir
    return d


def store_summary(run_dir: Path, d: dict[str, Any]) -> None:
    """Replace the run's ``summary.json`` with ``d`` (atomically); :class:`RunError` if refused."""
    write_json_atomic(run_dir / SUMMARY, d)


def store_summary_if_possible(run_dir: Path, d: dict[str, Any]) -> None:
    """:func:`store_summary` where the run's directory is writable; a refusal is logged only (the
    summary is recomputed the next time)."""
    if not os.access(run_dir, os.W_OK):
        return
    try:
        store_summary(run_dir, d)
    except (RunError, OSError) as e:
        log.info("could not store %s: %s", run_dir / SUMMARY, e)


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run directories: each path is a run, or a directory searched (recursively) for runs."""
    out: list[Path] = []
    for raw in paths:
        out.extend(Path(run_dir) for run_dir, _, _ in _find(Path(raw), frozenset()))
    return out


def _find(p: Path, known: frozenset[str]) -> list[tuple[str, str, Signature | None]]:
    """The runs at ``p`` (a run, or a directory of runs) in path order, each as (its path, its path
    relative to ``p``: ``""`` for ``p`` itself, and its ``meta.json``'s signature where it was
    taken). Strings, not Paths: 10^4 runs are found in milliseconds."""
    if not p.exists():
        raise InputError("no such file or directory", path=str(p))
    if (p / META).is_file():
        return [(str(p), "", None)]
    if not p.is_dir():
        raise InputError("not a run directory or a directory of runs", path=str(p))
    return sorted(_walk_runs(str(p), known), key=lambda r: r[1].split("/"))


def _walk_runs(root: str, known: frozenset[str] = frozenset()) -> list[tuple[str, str, Signature | None]]:
    """Run directories under ``root`` (with their paths relative to it); a run's own folder is not
    searched further (its samples can be large, and a run holds no runs). A folder named in
    ``known`` (the runs the cache remembers) is confirmed by its ``meta.json`` alone, without
    listing it (its signature is kept). Symbolic links to folders are not followed (as
    :func:`os.walk`); unreadable folders are skipped."""
    found: list[tuple[str, str, Signature | None]] = []
    stack: list[tuple[str, str]] = [(root, "")]
    while stack:
        d, rel = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = list(it)
        except OSError:
            continue
        if any(e.name == META and not e.is_dir() for e in entries):
            found.append((d, rel, None))
            continue
        for e in entries:
            if not e.is_dir() or e.is_symlink():
                continue
            sub_rel = f"{rel}/{e.name}" if rel else e.name
            if sub_rel in known:
                try:
                    st = os.stat(f"{e.path}/{META}")
                except OSError:
                    st = None
                if st is not None and stat.S_ISREG(st.st_mode):
                    found.append((e.path, sub_rel, (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)))
                    continue
            stack.append((e.path, sub_rel))
    return found


def _line(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"


class _Cache:
    """The summaries cache of one directory of runs (see the module docstring).

    An append-only log of JSON lines: a header ``{"cache": CACHE_VERSION, "summary_version": ...}``,
    then one line per change, ``[path relative to the directory, meta.json's signature,
    summary.json's signature, the stored summary]`` or ``[path, null]`` for a run gone or changed;
    the last line of a run wins. A night that adds a run appends one line (10^4 runs' cache is
    never rewritten for it); the log is compacted (rewritten atomically) when most of it is
    superseded. Lines that do not parse (a torn write) are skipped."""

    def __init__(self, root: Path) -> None:
        self.path = root / CACHE
        self.root = root
        self.entries: dict[str, list[Any]] = {}
        #: changes not yet in the log: (run, its entry, or None when it is gone)
        self.pending: list[tuple[str, list[Any] | None]] = []
        self.lines = 0
        self.rewrite = True  # no usable log yet
        self.ends_whole = True
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return
        except OSError as e:
            log.info("%s: unreadable summaries cache ignored (%s)", self.path, e)
            return
        lines = raw.split(b"\n")
        self.ends_whole = raw.endswith(b"\n")
        try:
            head = json.loads(lines[0])
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            head = None
        if not (isinstance(head, dict) and head.get("cache") == CACHE_VERSION
                and head.get("summary_version") == SUMMARY_VERSION):
            return
        self.rewrite = False
        for line in lines[1:]:
            if not line:
                continue
            self.lines += 1
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                continue
            if isinstance(rec, list) and len(rec) == 4 and isinstance(rec[0], str):
                self.entries[rec[0]] = rec[1:]
            elif isinstance(rec, list) and len(rec) == 2 and isinstance(rec[0], str):
                self.entries.pop(rec[0], None)

    def _drop(self, key: str) -> None:
        if self.entries.pop(key, None) is not None:
            self.pending.append((key, None))

    def summary(self, run_dir: str, key: str, meta_sig: Signature | None = None) -> dict[str, Any] | None:
        """The run's current stored summary (from the cache when the files are unchanged); ``key``
        is the run's path relative to the cache's directory, ``meta_sig`` its ``meta.json``'s
        signature if it was just taken."""
        if meta_sig is None:  # both before reading
            meta_sig = _signature(f"{run_dir}/{META}")
        sum_sig = _signature(f"{run_dir}/{SUMMARY}")
        e = self.entries.get(key)
        if (isinstance(e, list) and len(e) == 3 and meta_sig is not None and e[0] == list(meta_sig)
                and e[1] == list(sum_sig or ()) and isinstance(e[2], dict)):
            cached: dict[str, Any] = dict(e[2])
            cached["path"] = run_dir
            return cached
        d = _read_file(run_dir) if _current(sum_sig, meta_sig) else None
        if d is None:
            self._drop(key)
            return None
        assert meta_sig is not None and sum_sig is not None
        if time.time_ns() - max(meta_sig[0], sum_sig[0]) < RACY_NS:
            self._drop(key)  # too fresh to trust its signature later: read from the file until it settles
            return d
        entry = [list(meta_sig), list(sum_sig), {k: v for k, v in d.items() if k != "path"}]
        self.entries[key] = entry
        self.pending.append((key, entry))
        return d

    def save(self, seen: set[str]) -> None:
        """Record the changes (and the runs not ``seen`` this time as gone): appended to the log,
        or the log rewritten when it is new, unreadable or mostly superseded. Best effort."""
        for key in [k for k in self.entries if k not in seen]:
            self._drop(key)
        if not self.pending and not self.rewrite:
            return
        if not os.access(self.root, os.W_OK):
            return
        try:
            if self.rewrite or self.lines + len(self.pending) > 2 * len(self.entries) + 64:
                self._write_all()
            else:
                self._append()
        except (RunError, OSError) as e:
            log.info("%s: summaries cache not written (%s)", self.path, e)

    def _write_all(self) -> None:
        body = [_line({"cache": CACHE_VERSION, "summary_version": SUMMARY_VERSION})]
        body.extend(_line([k, *e]) for k, e in self.entries.items())
        write_bytes_atomic(self.path, b"".join(body), "cache")

    def _append(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)  # no O_CREAT: a log deleted meanwhile stays so
        try:
            body = b"".join(_line([k, None] if e is None else [k, *e]) for k, e in self.pending)
            write_all(fd, (b"" if self.ends_whole else b"\n") + body)
        finally:
            os.close(fd)


def read_summaries(paths: list[str | Path], *, cache: bool = True) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Every run found under ``paths`` (as :func:`find_runs`), with its current stored summary or
    None (then it must be computed). A directory of runs reads and updates its summaries cache
    (unless ``cache`` is False: then every ``summary.json`` is read)."""
    for raw in paths:
        p = Path(raw)
        if not cache or (p / META).is_file() or not p.is_dir():
            for run_dir, _, _ in _find(p, frozenset()):
                yield run_dir, read_summary(Path(run_dir))
            continue
        c = _Cache(p)
        runs = _find(p, frozenset(c.entries))
        for run_dir, key, meta_sig in runs:
            yield run_dir, c.summary(run_dir, key, meta_sig)
        c.save({key for _, key, _ in runs})

