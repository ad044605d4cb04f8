"""A directory of runs keeps one summaries cache, so that nightly over 10,000 runs reads one file
(benchmarks/history_scale.py); the cache is never a source of stale figures."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import wattprof

from wattprof.data import path as data_path
from wattprof.history import CACHE, SUMMARY, find_runs, read_summaries
from wattprof.reports.summary import load_history, load_summary


@pytest.fixture(scope="module")
def seed(tmp_path_factory) -> Path:
    """One real run (the shipped H100 trace and its steps, imported) with its summary.json."""
    run = tmp_path_factory.mktemp("seed") / "run"
    wattprof("import", str(run), "--samples", str(data_path("nvml_samples_10ms.csv")),
             "--steps", str(data_path("steps.jsonl")), check=True)
    load_summary(run)
    assert (run / SUMMARY).is_file()
    return run


def _night(root: Path, seed: Path, bench: str, night: int, *, full: bool = False) -> Path:
    """A copy of the seed run as ``bench``'s run of ``night`` (only meta.json and summary.json
    unless ``full``: a current summary is all nightly reads)."""
    d = root / bench / f"night-{night:02d}"
    if full:
        shutil.copytree(seed, d)
    else:
        d.mkdir(parents=True)
    meta = json.loads((seed / "meta.json").read_text())
    meta.update(tags={"benchmark": bench}, started_at=1.79e9 + night * 86400)
    (d / "meta.json").write_text(json.dumps(meta))
    s = json.loads((seed / SUMMARY).read_text())
    s.update(benchmark=bench, tags=meta["tags"], started_at=meta["started_at"])
    (d / SUMMARY).write_text(json.dumps(s))
    _settle(d)
    return d


def _settle(run: Path, *, ago_s: float = 60.0) -> None:
    """Date the run's files ``ago_s`` back (files changed in the last seconds are not cached)."""
    for f in (run / "meta.json", run / SUMMARY):
        t = time.time_ns() - int(ago_s * 1e9)
        os.utime(f, ns=(t, t))


def _set_summary(run: Path, **fields) -> None:
    s = json.loads((run / SUMMARY).read_text())
    s.update(fields)
    (run / SUMMARY).write_text(json.dumps(s))


@pytest.fixture
def history(tmp_path, seed) -> Path:
    root = tmp_path / "history"
    for night in range(4):
        _night(root, seed, "train", night)
        _night(root, seed, "serve", night)
    return root


def _cached(root: Path) -> dict[str, list]:
    """The cache's current entries: its log replayed (the last line of a run wins)."""
    lines = (root / CACHE).read_text().splitlines()
    assert json.loads(lines[0])["cache"] == 1
    out: dict[str, list] = {}
    for line in lines[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a torn line (the cache skips it too)
            continue
        if rec[1] is None:
            out.pop(rec[0], None)
        else:
            out[rec[0]] = rec[1:]
    return out


def _jpt(root: Path) -> dict[str, float]:
    return {Path(s.path).relative_to(root).as_posix(): s.j_per_token for s in load_history([root])}


def test_the_first_read_builds_the_cache_and_the_next_reads_come_from_it(history):
    first = _jpt(history)
    assert len(first) == 8 and (history / CACHE).is_file()
    cache = _cached(history)
    assert sorted(cache) == sorted(first)
    # proof the next read is served by the cache: an entry's figure changed in the cache alone
    meta_sig, sum_sig, summary = cache["train/night-02"]
    with (history / CACHE).open("a") as f:
        f.write(json.dumps(["train/night-02", meta_sig, sum_sig, {**summary, "j_per_token": 123.0}]) + "\n")
    assert _jpt(history)["train/night-02"] == 123.0
    assert _jpt(history)["train/night-01"] == first["train/night-01"]


def test_a_new_run_is_appended_to_the_cache_not_the_whole_cache_rewritten(history, seed):
    _jpt(history)
    before = (history / CACHE).read_bytes()
    ino = os.stat(history / CACHE).st_ino
    _night(history, seed, "serve", 6)
    assert "serve/night-06" in _jpt(history)
    after = (history / CACHE).read_bytes()
    assert os.stat(history / CACHE).st_ino == ino and after.startswith(before)
    assert after[len(before):].count(b"\n") == 1
    assert _jpt(history) == _jpt(history) and (history / CACHE).read_bytes() == after  # nothing new: untouched


def test_a_rewritten_summary_is_read_again_never_served_stale(history):
    _jpt(history)
    run = history / "train" / "night-03"
    _set_summary(run, j_per_token=0.5)  # just written: read from the file, not cached
    assert _jpt(history)["train/night-03"] == 0.5
    assert "train/night-03" not in _cached(history)
    _settle(run)
    assert _jpt(history)["train/night-03"] == 0.5
    assert "train/night-03" in _cached(history)
    # rewritten in place with the same size and its modification time put back: the change time differs
    st = os.stat(run / SUMMARY)
    _set_summary(run, j_per_token=0.7)
    os.utime(run / SUMMARY, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(run / SUMMARY).st_size == st.st_size
    assert _jpt(history)["train/night-03"] == 0.7


def test_a_changed_run_is_summarised_again(history, seed):
    run = _night(history, seed, "train", 9, full=True)
    before = _jpt(history)["train/night-09"]
    meta = json.loads((run / "meta.json").read_text())
    meta["tags"]["benchmark"] = "train-v2"  # meta.json newer than summary.json: the summary is stale
    (run / "meta.json").write_text(json.dumps(meta))
    _settle(run)
    st = os.stat(run / SUMMARY)
    os.utime(run / "meta.json", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    (s,) = [s for s in load_history([history]) if s.path == str(run)]
    assert s.benchmark == "train-v2" and s.j_per_token == pytest.approx(before)
    assert json.loads((run / SUMMARY).read_text())["benchmark"] == "train-v2"  # stored again


def test_new_and_removed_runs_are_seen(history, seed):
    _jpt(history)
    _night(history, seed, "serve", 7)
    shutil.rmtree(history / "train" / "night-00")
    got = _jpt(history)
    assert "serve/night-07" in got and "train/night-00" not in got
    assert "train/night-00" not in _cached(history)
    # a remembered run that stopped being a run (meta.json gone) but now holds runs is searched again
    (history / "train" / "night-01" / "meta.json").unlink()
    (history / "train" / "night-01" / SUMMARY).unlink()
    _night(history / "train" / "night-01", seed, "train", 11)
    assert "train/night-01/train/night-11" in _jpt(history)


def test_a_damaged_cache_is_ignored_and_replaced(history):
    first = _jpt(history)
    (history / CACHE).write_bytes(b'{"cache": 1, "runs": {"tr')
    assert _jpt(history) == first
    assert len(_cached(history)) == 8
    with (history / CACHE).open("ab") as f:  # a torn last line: skipped, the next append starts a new line
        f.write(b'["train/night-01", [1, 2')
    _night(history, history / "train" / "night-02", "serve", 5)
    assert _jpt(history) == {**first, "serve/night-05": first["train/night-02"]}
    assert "serve/night-05" in _cached(history)


def test_discovery_with_and_without_the_cache_agree(history, seed):
    _night(history, seed, "serve", 8)
    (history / "notes").mkdir()
    (history / "notes" / "readme.txt").write_text("not a run")
    expected = find_runs([history])
    assert [Path(d) for d, _ in read_summaries([history])] == expected  # builds the cache
    assert [Path(d) for d, _ in read_summaries([history])] == expected  # uses it
    assert [Path(d) for d, _ in read_summaries([history], cache=False)] == expected
    assert load_history([history], cache=False) == load_history([history])
    assert len(expected) == 9
