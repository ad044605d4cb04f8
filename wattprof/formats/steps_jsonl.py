"""The steps JSONL format: one JSON object per line.

Keys: ``t_start``, ``t_end`` (wall clock Unix seconds, required), optional ``tokens``, ``step``,
``rank``, and a label under ``label``, ``phase`` or ``kind`` (first found wins). Other keys are
kept as extra columns. Blank lines are ignored.

Ranges are checked too: times within +/-:data:`MAX_TIME_S` (Unix seconds up to 2100: not
milliseconds), ``tokens`` at most :data:`MAX_TOKENS` per step (so that sums stay finite), and text
(labels, extra keys) must be valid Unicode (no lone surrogates, which no output can encode).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..schema import DEFAULT_LABEL, LABEL_KEYS, STEP_COLUMNS
from . import finite_number

#: Largest step time (Unix seconds, the year 2100) and token count of one step that are read.
MAX_TIME_S = 4102444800.0
MAX_TOKENS = 1e15


def _number(value: object, key: str, path: str, line: int, *, required: bool,
            limit: float = MAX_TIME_S) -> float | None:
    if value is None:
        if required:
            raise InputError(f"missing '{key}' (expected a number of seconds)", path=path, line=line)
        return None
    if not finite_number(value):
        raise InputError(f"'{key}' is {str(value)[:40]}, expected a finite number", path=path, line=line)
    if abs(value) > limit:
        unit = " (Unix seconds, not milliseconds)" if key.startswith("t_") else ""
        raise InputError(f"'{key}' is {str(value)[:40]}, expected at most {limit:g}{unit}", path=path, line=line)
    return float(value)


def _text_ok(value: object) -> bool:
    """False for a string no output can encode (a lone surrogate such as ``"\\ud800"`` in JSON)."""
    if not isinstance(value, str) or value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True




def normalize_step(obj: object, path: str, line: int) -> dict:
    """Validate one parsed step object; return it with canonical keys."""
    if not isinstance(obj, dict):
        raise InputError("expected a JSON object per line", path=path, line=line)
    t0 = _number(obj.get("t_start"), "t_start", path, line, required=True)
    t1 = _number(obj.get("t_end"), "t_end", path, line, required=True)
    assert t0 is not None and t1 is not None
    if t1 < t0:
        raise InputError(f"t_end ({t1}) is before t_start ({t0})", path=path, line=line)
    tokens = _number(obj.get("tokens"), "tokens", path, line, required=False, limit=MAX_TOKENS)
    if tokens is not None and tokens < 0:
        raise InputError(f"'tokens' is {tokens}, expected >= 0", path=path, line=line)
    label = next((obj[k] for k in LABEL_KEYS if obj.get(k) is not None), DEFAULT_LABEL)
    for k, v in obj.items():
        if not (_text_ok(k) and _text_ok(v)):
            raise InputError(f"'{k if _text_ok(k) else repr(k)}' is not valid Unicode text (a lone surrogate); "
                             "expected UTF-8 text", path=path, line=line)
    out = {k: v for k, v in obj.items() if k not in LABEL_KEYS}
    out.update(t_start=t0, t_end=t1, tokens=tokens, label=str(label))
    return out


def read_steps_jsonl(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found (expected a steps JSONL file)", path=str(p))
    rows = []
    with p.open(encoding="utf-8", errors="strict") as f:
        try:
            for n, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise InputError(f"not JSON ({e.msg}); expected one JSON object per line",
                                     path=str(p), line=n) from None
                except RecursionError:
                    raise InputError("JSON nested too deeply; expected one flat JSON object per line",
                                     path=str(p), line=n) from None
                rows.append(normalize_step(obj, str(p), n))
        except UnicodeDecodeError:
            raise InputError("not UTF-8 text (expected JSON lines)", path=str(p)) from None
    if not rows:
        raise InputError("no steps in file", path=str(p))
    return steps_frame(rows)


def steps_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows of step dicts -> the canonical steps DataFrame (sorted by ``t_start``)."""
    df = pd.DataFrame(rows)
    for c in STEP_COLUMNS:
        if c not in df.columns:
            df[c] = None
    df["t_start"] = df["t_start"].astype("float64")
    df["t_end"] = df["t_end"].astype("float64")
    df["tokens"] = pd.to_numeric(df["tokens"], errors="coerce").astype("float64")
    df["label"] = df["label"].fillna(DEFAULT_LABEL).astype(str)
    df = df.sort_values(["t_start", "t_end"], kind="stable").reset_index(drop=True)
    if df["step"].isna().all():
        df["step"] = range(len(df))
    return df
