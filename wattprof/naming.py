"""A run's name and tags: the default name of a recorded command, and the name and tags a profiled
script gives itself when it runs under ``wattprof record``.

``wattprof record -- python bench.py`` names the run ``bench`` (not ``python``). When the script
calls ``wattprof.profile("train-bench", tags={"benchmark": "train-bench"})`` it joins the recorded
run and announces its name and tags there (an event ``profile_joined``); the recorder merges them
into the run when the command ends: the script's name replaces the default name, its tags are
added, and where they conflict with what the user gave on the command line, the command line wins
and the conflict is said.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: the event a joined profile writes into the run it joins
PROFILE_JOINED = "profile_joined"

#: launchers whose first file argument (or ``-m module``) names what really runs
_INTERPRETERS = ("python", "pypy", "bash", "sh", "zsh", "node", "ruby", "perl", "torchrun", "deepspeed",
                 "accelerate", "uv", "poetry", "pipenv", "srun", "mpirun", "env", "nohup", "time")
#: launcher sub-commands that come before the script (``accelerate launch x.py``, ``uv run x.py``)
_SUBCOMMANDS = ("launch", "run", "exec")


def _is_launcher(arg: str) -> bool:
    base = Path(arg).name.lower()
    return any(base == n or (base.startswith(n) and base[len(n):].replace(".", "").isdigit())
               for n in _INTERPRETERS)


def default_run_name(command: Sequence[str]) -> str:
    """The stem of the script or executable a command runs: ``python bench.py`` -> ``bench``,
    ``python -m pkg.train`` -> ``train``, ``./serve.sh`` -> ``serve``, ``torchrun --nproc 8 x.py`` -> ``x``."""
    if not command:
        return "run"
    args = list(command)
    if not _is_launcher(args[0]):
        return Path(args[0]).stem or "run"
    rest = args[1:]
    for j, a in enumerate(rest):
        if a == "-m" and j + 1 < len(rest):
            return rest[j + 1].rsplit(".", 1)[-1] or "run"
        if a == "-c":  # inline code: named after the interpreter
            return Path(args[0]).stem or "run"
    # the script: the first argument that is a file (or looks like one), else the first non-option
    plain = [a for a in rest if not a.startswith("-") and "=" not in a and a not in _SUBCOMMANDS
             and not _is_launcher(a)]
    files = [a for a in plain if Path(a).suffix or Path(a).is_file()]
    target = files[0] if files else (plain[0] if plain and rest[0] == plain[0] else args[0])
    return Path(target).stem or "run"


@dataclass
class Identity:
    """The name and tags a run ends up with, and what was said about conflicts."""

    name: str
    tags: dict[str, str]
    notes: list[str] = field(default_factory=list)


def merge_identity(name: str, tags: dict[str, str], *, name_given: bool,
                   inner: Sequence[tuple[str | None, dict[str, str]]]) -> Identity:
    """Merge the name and tags of the profiles that joined a run into the run's own.

    ``name_given``: the user named the run (``--name``): it is kept and a different inner name is
    a conflict. Otherwise the first inner name replaces ``name`` (the command's default). Tags are
    added; a tag the command line set to another value keeps the command line's value.
    """
    out = Identity(name, dict(tags))
    name_from_inner = False
    for inner_name, inner_tags in inner:
        if inner_name and inner_name != out.name:
            if name_given:
                out.notes.append(f"run name {out.name!r} (--name) kept; the script's profile() names it "
                                 f"{inner_name!r}")
            elif name_from_inner:
                out.notes.append(f"run name {out.name!r} kept; another profile() in the run names it "
                                 f"{inner_name!r}")
            else:
                out.name, name_from_inner = inner_name, True
        for k, v in inner_tags.items():
            v = str(v)
            if k in out.tags and out.tags[k] != v:
                src = "--tag" if k in tags else "an earlier profile()"
                out.notes.append(f"tag {k}={out.tags[k]!r} ({src}) kept; the script's profile() sets "
                                 f"{k}={v!r}")
            else:
                out.tags[k] = v
    return out


def joined_profiles(run_dir: str | Path) -> list[tuple[str | None, dict[str, str]]]:
    """``(name, tags)`` announced by every profile that joined the run, in the order they joined."""
    found: list[tuple[float, str | None, dict[str, str]]] = []
    for f in sorted(Path(run_dir).glob("events-*.jsonl")):
        try:
            lines = f.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line: the run reader reports it
            if not isinstance(obj, dict) or obj.get("kind") != PROFILE_JOINED:
                continue
            name = obj.get("name") if isinstance(obj.get("name"), str) else None
            raw_tags, raw_t = obj.get("tags"), obj.get("t")
            tags = raw_tags if isinstance(raw_tags, dict) else {}
            t = float(raw_t) if isinstance(raw_t, (int, float)) else 0.0
            found.append((t, name, {str(k): str(v) for k, v in tags.items()}))
    found.sort(key=lambda x: x[0])
    return [(n, tg) for _, n, tg in found]
