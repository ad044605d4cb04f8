"""``meta.json``: the run's description (id, name, tags, command, host, devices, sources, status ...).

The one place that knows its fields, their types, ranges and defaults: a new run's meta is the
defaults with the writer's values (:func:`new_meta`), and a read one is checked against the same
table (:func:`read_meta`): a field of the wrong type or out of range is reset to its default, with
a warning, so readers can trust the types of :data:`META_FIELDS`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import uuid
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import InputError, RunError
from ..formats import finite_number as _finite

FORMAT = 1
META = "meta.json"

#: meta.json fields readers rely on, with the type each must have (else reset, with a warning).
META_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,), "name": (str, type(None)), "tags": (dict,), "command": (list, type(None)),
    "host": (dict,), "started_at": (int, float, type(None)), "ended_at": (int, float, type(None)),
    "status": (str,), "exit_code": (int, type(None)), "interval_s": (int, float, type(None)),
    "devices": (dict,), "sources": (dict,), "errors": (list,),
}
_META_DEFAULTS: dict[str, Any] = {"id": "", "name": None, "tags": {}, "command": None, "host": {},
                                  "started_at": None, "ended_at": None, "status": "unfinished",
                                  "exit_code": None, "interval_s": None, "devices": {}, "sources": {},
                                  "errors": []}
#: Ranges of numeric meta.json fields (inclusive): a value outside is reset, with a warning. Times
#: are Unix seconds up to the year 2100 (milliseconds or 1e300 would crash date formatting later).
MAX_UNIX_TIME = 4102444800.0
META_RANGES: dict[str, tuple[float, float]] = {
    "started_at": (0.0, MAX_UNIX_TIME), "ended_at": (0.0, MAX_UNIX_TIME),
    "interval_s": (1e-6, 86400.0), "exit_code": (-(2**31), 2**31 - 1),
}
#: per-device fields with a type readers rely on
_DEVICE_NUMBERS = ("power_limit_w",)
#: a device's power limit, in watts (a whole node stays under a megawatt)
_POWER_LIMIT_RANGE = (0.0, 1e6)
_DEVICE_TEXTS = ("name", "uuid", "power_source", "kind", "vendor", "note")


def new_meta(*, name: str, started_at: float, tags: dict[str, str] | None = None,
             command: list[str] | None = None, interval_s: float | None = None) -> dict[str, Any]:
    """The meta of a run being created by this process: the defaults of :data:`META_FIELDS`, a new
    id, this host and wattprof version, status ``recording``; the command is redacted."""
    meta: dict[str, Any] = {"format": FORMAT, **copy.deepcopy(_META_DEFAULTS)}
    meta.update(
        id=uuid.uuid4().hex[:12], name=name, tags=dict(tags or {}),
        command=redact_command(list(command)) if command else None,
        host={"hostname": socket.gethostname(), "pid": os.getpid()}, wattprof_version=__version__,
        started_at=started_at, status="recording", interval_s=interval_s,
    )
    return meta


def read_meta(path: Path, warnings: list[str] | None = None) -> dict:
    """``meta.json`` of the run at ``path``, checked: :class:`InputError` when it is missing,
    not JSON or of another format; fields of the wrong type are reset (with a warning
    appended to ``warnings``), so readers can trust the types of :data:`META_FIELDS`."""
    mp = path / META
    if not path.is_dir():
        raise InputError("not a directory (expected a wattprof run directory)", path=str(path))
    if not mp.is_file():
        raise InputError("no meta.json: not a wattprof run directory", path=str(path))
    try:
        meta = json.loads(mp.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise InputError(f"corrupt meta.json ({type(e).__name__}: {str(e)[:200]})", path=str(mp)) from None
    except OSError as e:
        raise RunError(f"{mp}: cannot read ({e.strerror or e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else "?"
        raise InputError(f"unsupported run format {str(fmt)[:40]} (expected {FORMAT})", path=str(mp))
    problems = clean_meta(meta)
    if warnings is not None:
        warnings.extend(f"meta.json: {m}" for m in problems)
    return meta


def clean_meta(meta: dict) -> list[str]:
    """Reset fields of ``meta`` whose type is wrong (in place); return what was reset."""
    problems: list[str] = []
    for key, types in META_FIELDS.items():
        if key not in meta:
            continue
        v = meta[key]
        ok = isinstance(v, types) and not isinstance(v, bool)
        if ok and types[0] in (int, float) and v is not None and not _finite(v):
            ok = False
        if not ok:
            problems.append(f"'{key}' is {type(v).__name__} {str(v)[:40]!r}, ignored")
            meta[key] = copy.deepcopy(_META_DEFAULTS[key])
            continue
        lo_hi = META_RANGES.get(key)
        if lo_hi is not None and v is not None and not lo_hi[0] <= v <= lo_hi[1]:
            problems.append(f"'{key}' is {str(v)[:40]!r}, outside {lo_hi[0]:g}..{lo_hi[1]:g}"
                            f"{' (Unix seconds expected)' if key.endswith('_at') else ''}, ignored")
            meta[key] = copy.deepcopy(_META_DEFAULTS[key])
    tags = meta.get("tags") or {}
    meta["tags"] = {str(k): v if isinstance(v, str) else json.dumps(v, default=str) for k, v in tags.items()}
    if meta.get("command") is not None:
        meta["command"] = [str(a) for a in meta["command"]]
    devices: dict[str, dict] = {}
    for dev, info in (meta.get("devices") or {}).items():
        if not isinstance(info, dict):
            problems.append(f"device {str(dev)[:40]!r}: not an object, ignored")
            continue
        info = dict(info)
        for k in _DEVICE_NUMBERS:
            if k in info and info[k] is not None and not (
                    _finite(info[k]) and _POWER_LIMIT_RANGE[0] < info[k] <= _POWER_LIMIT_RANGE[1]):
                problems.append(f"device {str(dev)[:40]!r}: '{k}' is {str(info[k])[:40]!r}, ignored")
                info[k] = None
        for k in _DEVICE_TEXTS:
            if k in info and info[k] is not None and not isinstance(info[k], str):
                info[k] = json.dumps(info[k], default=str)
        devices[str(dev)] = info
    meta["devices"] = devices
    sources: dict[str, dict] = {}
    for key, info in (meta.get("sources") or {}).items():
        if not isinstance(info, dict):
            problems.append(f"source {str(key)[:40]!r}: not an object, ignored")
            continue
        info = dict(info)
        caveats = info.get("caveats")
        if caveats is not None:
            info["caveats"] = [str(c) for c in caveats] if isinstance(caveats, list) else [str(caveats)]
        sources[str(key)] = info
    meta["sources"] = sources
    return problems



#: Argument names whose values are secrets: ``--password=x``, ``--api-token x``, ``AWS_SECRET_KEY=x``.
_SECRET_NAME = re.compile(r"(passw(or)?d|secret|credential|(^|[-_])(api[-_]?|access[-_]?|auth[-_]?)?(token|key)$)", re.I)
REDACTED = "***"


def redact_command(argv: list[str]) -> list[str]:
    """``argv`` with the values of secret-looking arguments replaced by ``***``: ``--password=x``,
    ``--token x`` (the next argument), ``API_KEY=x``. What is recorded in ``meta.json`` (and so
    in every report) is the redacted command; the program itself gets the real one."""
    out: list[str] = []
    hide_next = False
    for a in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        name, eq, _value = a.partition("=")
        bare = name.lstrip("-")
        if eq and bare and _SECRET_NAME.search(bare) and " " not in name:
            out.append(f"{name}={REDACTED}")
        elif name.startswith("-") and not eq and bare and _SECRET_NAME.search(bare):
            out.append(a)
            hide_next = True
        else:
            out.append(a)
    return out

