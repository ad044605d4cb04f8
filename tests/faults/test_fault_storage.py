"""The disk refusing writes while recording: a file size limit (RLIMIT_FSIZE, EFBIG) and a full
file system (a small tmpfs, ENOSPC; needs root). Real `wattprof record` processes."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wattprof_in_process
from faultkit import kinds, max_gap, meta

from wattprof.run import Run

CHILD_SLEEP = "import time; time.sleep({s}); print('child done', flush=True)"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("WATTPROF_RUN_DIR", None)
    env.pop("WATTPROF_RUN_ID", None)
    return env


def _limit_file_size(limit: int):
    def pre() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


def _record(run: Path, child: str, *, preexec=None, interval: float = 0.01, devices: int = 8):
    return subprocess.run([sys.executable, "-m", "wattprof", "record", "--out", str(run), "-q",
                           "-c", f"nvml-replay:devices={devices}", "--interval", str(interval),
                           "--", sys.executable, "-c", child],
                          env=_env(), capture_output=True, text=True, timeout=120, preexec_fn=preexec)


def _check_intact_prefix(run: Path) -> None:
    """The samples that were written are whole and start at the beginning, without holes."""
    r = Run.open(run)
    t = r.samples.loc[r.samples["device"] == "gpu:0", "t"].to_numpy()
    assert len(t) >= 50
    assert t.min() - r.meta["started_at"] < 1.0
    assert max_gap(t) < 0.2
    assert not [w for w in r.warnings if "damaged" in w or "partly written" in w], r.warnings


@pytest.mark.slow  # seconds of real time are the point (a real record, killed or hanging)
def test_file_size_limit_reached_while_recording(tmp_path):
    """Guarantee: when the disk refuses samples (here EFBIG from RLIMIT_FSIZE), the error is
    clear (one warning on stderr naming the file and the cause, `storage_error` events, listed in
    meta.json's errors), the samples written before stay intact (no torn batch: a partial write
    is cut off again), the recorder and the command keep running (the command's exit status is
    kept) and the run is finalised."""
    run = tmp_path / "run"
    p = _record(run, CHILD_SLEEP.format(s=4), preexec=_limit_file_size(24_000))
    assert p.returncode == 0, p.stderr
    assert "child done" in p.stdout
    assert "the file size limit was reached (EFBIG)" in p.stderr and "samples-nvml-replay" in p.stderr
    m = meta(run)
    assert m["status"] == "finished" and m["exit_code"] == 0
    assert any("EFBIG" in e and "samples lost" in e for e in m["errors"]), m["errors"]
    assert "storage_error" in kinds(run)
    _check_intact_prefix(run)
    rep = wattprof_in_process("report", str(run))
    assert rep.returncode == 0, rep.stderr


def test_file_size_limit_keeps_the_commands_exit_status(tmp_path):
    """Guarantee: storage errors never replace a failing command's own exit status."""
    p = _record(tmp_path / "run", "import time, sys; time.sleep(2); sys.exit(7)", preexec=_limit_file_size(20_000))
    assert p.returncode == 7, p.stderr


@contextlib.contextmanager
def _tmpfs(path: Path, size: str):
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the RLIMIT_FSIZE test covers the same path)")
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if m.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {m.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.slow  # seconds of real time are the point (a real record, killed or hanging)
def test_disk_full_while_recording(tmp_path):
    """Guarantee: on a file system that fills up during the run (ENOSPC), the samples written
    before stay intact and readable, the error is clear (stderr, events, meta.json's errors), the
    command runs to its end, and the run is still finalised with its status: the space set
    aside when recording began (`.reserve`, 64 KiB) is freed to write the final meta.json (the
    samples the disk refused to the end are counted as lost there). A stream whose Parquet copy
    no longer fits stays as it is, readable."""
    with _tmpfs(tmp_path / "small", "160k") as fs:
        run = fs / "run"
        p = _record(run, CHILD_SLEEP.format(s=8), devices=32)  # ~28 KB of samples a second
        assert p.returncode == 0, p.stderr
        assert "child done" in p.stdout
        assert "samples-nvml-replay.arrows: cannot write samples: no space left on the device (ENOSPC)" in p.stderr
        m = meta(run)
        assert m["status"] == "finished" and m["exit_code"] == 0
        assert any("ENOSPC" in e for e in m["errors"]), m["errors"]
        assert "storage_error" in kinds(run)
        assert not (run / ".reserve").exists()
        _check_intact_prefix(run)
        rep = wattprof_in_process("report", str(run))
        assert rep.returncode == 0, rep.stderr


STEPS_CHILD = """
import time, wattprof
with wattprof.profile() as prof:
    for i in range(400):
        with prof.step(tokens=1000, label="train", note="x" * 80):
            time.sleep(0.005)
print("child done", flush=True)
"""


def test_step_marks_on_a_full_disk_never_stop_the_training_loop(tmp_path):
    """Guarantee: when the disk refuses step marks, the profiled program is not interrupted: the
    marks are kept in memory (bounded, retried) and it gets one RuntimeWarning saying why."""
    p = _record(tmp_path / "run", STEPS_CHILD, preexec=_limit_file_size(16_000), interval=0.1, devices=1)
    assert "child done" in p.stdout, p.stderr
    assert p.returncode == 0, p.stderr
    assert "cannot write lines: the file size limit was reached (EFBIG)" in p.stderr  # the program's warning
    steps = Run.open(tmp_path / "run").steps
    assert 50 <= len(steps) < 400  # the marks that fitted, whole
