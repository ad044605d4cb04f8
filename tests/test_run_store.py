"""The run directory: durable appends, readable when never finished, torn writes tolerated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from wattprof.errors import InputError
from wattprof.run import Run, RunWriter, compact


def make_run(tmp_path, batches=3, rows=4):
    w = RunWriter.create(tmp_path / "run", name="t", tags={"k": "v"})
    s = w.sample_stream("src", ["power_w", "energy_j"])
    for b in range(batches):
        s.append([{"t": 100.0 + b * rows + i, "device": "gpu:0", "power_w": 10.0 * i, "energy_j": None}
                  for i in range(rows)])
    return w, s


def test_an_unfinished_run_is_readable_as_dataframes(tmp_path):
    w, s = make_run(tmp_path)
    run = Run.open(tmp_path / "run")  # the writer is still "recording"
    assert run.status == "unfinished"
    assert len(run.samples) == 12
    assert run.samples["energy_j"].isna().all() and run.samples["power_w"].max() == 30.0
    assert run.meta["tags"] == {"k": "v"}


def test_a_torn_final_chunk_is_dropped_and_reported(tmp_path):
    w, s = make_run(tmp_path)
    path = s.path
    size = path.stat().st_size
    with open(path, "r+b") as f:  # cut the last record batch in half, as a crash mid-write would
        f.truncate(size - 40)
    run = Run.open(tmp_path / "run")
    assert len(run.samples) == 8
    assert any("partly written" in w for w in run.warnings)


def test_finalize_compacts_to_parquet_and_keeps_every_sample(tmp_path):
    w, s = make_run(tmp_path)
    w.finalize(status="finished", exit_code=0)
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert "samples-src.parquet" in names and "samples-src.arrows" not in names
    run = Run.open(tmp_path / "run")
    assert run.status == "finished" and len(run.samples) == 12
    compact(tmp_path / "run")  # idempotent
    assert len(Run.open(tmp_path / "run").samples) == 12


def test_steps_with_a_torn_last_line_are_kept_up_to_it(tmp_path):
    w, _ = make_run(tmp_path)
    f = tmp_path / "run" / "steps-0-1.jsonl"
    f.write_text('{"t_start": 100, "t_end": 101, "tokens": 5, "label": "a"}\n{"t_start": 101, "t_en')
    run = Run.open(tmp_path / "run")
    assert len(run.steps) == 1 and run.steps["tokens"].iloc[0] == 5
    assert any("partly written last line" in x for x in run.warnings)


def test_meta_is_replaced_atomically_and_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        w, _ = make_run(tmp_path)
        w.write_meta()
    finally:
        os.umask(old)
    mode = (tmp_path / "run" / "meta.json").stat().st_mode & 0o777
    assert mode == 0o640
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".meta.json")]


def test_not_a_run(tmp_path):
    with pytest.raises(InputError, match="meta.json"):
        Run.open(tmp_path)
    (tmp_path / "meta.json").write_text("{broken")
    with pytest.raises(InputError, match="corrupt meta.json"):
        Run.open(tmp_path)


def _start_profiled(run, sampler):
    code = (
        "import time, wattprof\n"
        f"p = wattprof.profile('k', collectors=['nvml-replay'], interval=0.02, out={str(run)!r}, "
        f"sampler={sampler!r}).start()\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    return proc


def test_a_recorder_killed_with_sigkill_leaves_a_readable_unfinished_run(tmp_path):
    """The sampling process itself is SIGKILLed: samples up to the last flush (<= 1 s old) survive."""
    run = tmp_path / "run"
    proc = _start_profiled(run, "thread")  # the recorder lives in the killed process
    time.sleep(2.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    r = Run.open(run)
    assert r.status == "unfinished"
    assert json.loads((run / "meta.json").read_text())["status"] == "recording"
    assert len(r.samples) >= 50  # >= 1 s of 50 Hz samples were flushed (flushes happen every second)


def test_a_profiled_process_killed_with_sigkill_gets_its_run_finalised_by_the_sampler(tmp_path):
    run = tmp_path / "run"
    proc = _start_profiled(run, "process")
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and json.loads((run / "meta.json").read_text())["status"] == "recording":
        time.sleep(0.1)
    r = Run.open(run)
    assert r.status == "interrupted"
    assert "profiled_process_gone" in set(r.events["kind"])
    assert len(r.samples) >= 50 and list(run.glob("samples-*.parquet"))


@pytest.mark.parametrize("shuffled", [True, False])
def test_parquet_is_written_by_device_then_time_a_row_group_at_a_time(tmp_path, monkeypatch, shuffled):
    # a table out of order is written sorted, one row group of the sorted order at a time (never a
    # sorted copy of the whole table); one already in order is written as it is
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from wattprof.run import stream, write_parquet

    monkeypatch.setattr(stream, "PARQUET_ROW_GROUP", 7)
    rng = np.random.default_rng(4)
    devices = np.array(["gpu:0"] * 20 + ["gpu:1"] * 15 + ["host"] * 11)
    t = np.concatenate([np.sort(rng.uniform(0, 9, 20)), np.sort(rng.uniform(0, 9, 15)), np.sort(rng.uniform(0, 9, 11))])
    order = rng.permutation(len(t)) if shuffled else np.arange(len(t))
    table = pa.table({"t": t[order], "device": devices[order], "power_w": np.arange(len(t), dtype=float)[order]})
    write_parquet(table, tmp_path / "samples-x.parquet")
    f = pq.ParquetFile(tmp_path / "samples-x.parquet")
    assert f.metadata.num_row_groups == -(-len(t) // 7)
    got = f.read()
    assert got.column("device").to_pylist() == devices.tolist()
    assert got.column("t").to_pylist() == t.tolist()
    assert got.column("power_w").to_pylist() == list(map(float, range(len(t))))
