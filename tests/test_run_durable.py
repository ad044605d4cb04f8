"""Atomic writes have one home (wattprof.run.durable): replaced whole or not at all, under the
process's umask, without ever changing it (other threads may be creating files meanwhile)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

import wattprof
from wattprof.errors import RunError
from wattprof.run import durable
from wattprof.run.meta import META_FIELDS, new_meta


def test_an_atomic_write_respects_the_umask_and_leaves_no_temporary_file(tmp_path):
    old = os.umask(0o027)
    try:
        durable.write_text_atomic(tmp_path / "a.prom", "x 1\n")
        durable.write_json_atomic(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.prom").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(tmp_path / "m.json").st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.prom", "m.json"]


def test_the_umask_is_never_changed_while_writing(tmp_path, monkeypatch):
    """A umask round trip (os.umask(0) then back) would let a file another thread creates at that
    moment be world-writable; the writes never call os.umask."""
    calls = []
    real = os.umask
    monkeypatch.setattr(os, "umask", lambda m: calls.append(m) or real(m))
    threads = [threading.Thread(target=durable.write_text_atomic, args=(tmp_path / f"f{i}", "x")) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [] and len(list(tmp_path.iterdir())) == 4


def test_a_failed_write_keeps_the_old_file_whole_and_says_why(tmp_path):
    target = tmp_path / "summary.json"
    durable.write_json_atomic(target, {"v": 1})

    def fail(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(RunError, match="no space left on the device"):
        durable.replace_atomically(target, fail, "JSON")
    assert target.read_text().strip().replace(" ", "").replace("\n", "") == '{"v":1}'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_new_runs_meta_has_every_checked_field_once():
    meta = new_meta(name="x", started_at=1.7e9, command=["train.py", "--api-key", "s3cret"])
    assert set(META_FIELDS) <= set(meta)
    assert meta["status"] == "recording" and meta["command"] == ["train.py", "--api-key", "***"]
    assert meta["devices"] is not new_meta(name="y", started_at=1.7e9)["devices"]  # no shared defaults


PKG = Path(wattprof.__file__).resolve().parent
def _replacing_modules() -> set[str]:
    """Modules of the package that rename a file over another or touch the umask themselves."""
    out = set()
    for f in PKG.rglob("*.py"):
        rel = f.relative_to(PKG).as_posix()
        text = f.read_text(encoding="utf-8")
        if rel != "run/durable.py" and ("os.replace(" in text or "os.rename(" in text or "os.umask(" in text):
            out.add(rel)
    return out


def test_atomic_writes_have_one_home():
    """Only wattprof.run.durable renames a file over another (or touches the umask)."""
    assert _replacing_modules() == set()
