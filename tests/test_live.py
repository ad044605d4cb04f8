"""The live status line: a real Recorder (NVML replay) shown on a pseudo-terminal."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from conftest import wattprof

from wattprof.collectors.base import resolve
from wattprof.live import (
    LiveSnapshot,
    LiveStatus,
    RecorderStats,
    StepTail,
    energy_so_far,
    render,
    start_live_status,
)
from wattprof.recording.recorder import Recorder
from wattprof.run import JsonlAppender, RunWriter

REPO = Path(__file__).resolve().parents[1]


def read_pty(fd: int, seconds: float) -> str:
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the other side closed (Linux: EIO)
                break
            if not chunk:
                break
            out += chunk
    return out.decode("utf-8", "replace")


def _recording(tmp_path: Path):
    writer = RunWriter.create(tmp_path / "run", name="live", interval_s=0.05)
    rec = Recorder(writer, resolve(["nvml-replay:devices=2"]), interval=0.05)
    rec.start()
    return writer, rec


def test_live_status_redraws_one_line_on_a_terminal_with_power_energy_steps_and_j_per_token(tmp_path):
    writer, rec = _recording(tmp_path)
    master, slave = pty.openpty()
    stream = os.fdopen(slave, "w", buffering=1, encoding="utf-8")
    steps = JsonlAppender(writer.path / "steps-0-1.jsonl")
    status = None
    try:
        status = start_live_status(rec, writer.path, stream, interval=0.2)
        assert status.tty  # detected from the stream
        t = time.time()
        for k in range(6):
            steps.append({"step": k, "t_start": t + k * 0.1, "t_end": t + k * 0.1 + 0.1, "tokens": 1000})
            time.sleep(0.15)
        time.sleep(0.5)
        status.stop()
        text = read_pty(master, 1.0)
    finally:
        if status is not None:
            status.stop()
        steps.close()
        rec.stop()
        writer.finalize(status="finished")
        stream.close()
        os.close(master)
    frames = [f for f in text.split("\r") if f.strip()]
    assert len(frames) >= 4, text  # redrawn in place, several times
    assert "\x1b[K" in text and "\n" not in text.rstrip("\r\n")  # one line, erased to its end, never scrolled
    last = frames[-1]
    assert re.search(r"gpu:0 \d+ W {2}gpu:1 \d+ W", last), last
    assert re.search(r"\| \d+\.\d (J|kJ) \|", last), last
    assert "6 steps" in last and "/s" in last
    assert "mJ/token" in last or "J/token" in last
    energies = [float(m.group(1)) for m in (re.search(r"\| (\d+\.\d) J \|", f) for f in frames) if m]
    assert energies and energies == sorted(energies) and energies[-1] > 0  # energy so far grows


def test_live_status_off_a_terminal_prints_whole_lines(tmp_path):
    writer, rec = _recording(tmp_path)
    buf = io.StringIO()
    try:
        live = LiveStatus(RecorderStats(rec, writer.path), buf, interval=0.1)
        assert not live.tty
        live.start()
        time.sleep(0.5)
        live.stop()
    finally:
        rec.stop()
        writer.finalize(status="finished")
    lines = buf.getvalue().splitlines()
    assert len(lines) >= 3 and "\r" not in buf.getvalue()
    assert all(line.startswith("wattprof 0:00:0") for line in lines)
    assert "0 steps" in lines[-1] and "J/token" not in lines[-1]  # no tokens: no J/token
    # the run directory itself gives energy so far (what the training callbacks log)
    so_far = energy_so_far(writer.path)
    assert so_far is not None and so_far.energy_j > 0 and so_far.devices == ["gpu:0", "gpu:1"]


def test_step_tail_reads_only_complete_new_lines(tmp_path):
    f = tmp_path / "steps-0-1.jsonl"
    tail = StepTail(tmp_path)
    assert tail.poll() == (0, None)
    f.write_text('{"t_start": 1, "t_end": 2, "tokens": 5}\n{"t_start": 2, "t_')
    assert tail.poll() == (1, 5.0)
    with f.open("a") as fh:
        fh.write('end": 3, "tokens": 7}\n{"t_start": 3, "t_end": 4}\n')
    (tmp_path / "steps-1-2.jsonl").write_text('{"t_start": 1, "t_end": 2, "tokens": 1}\n')
    assert tail.poll() == (4, 13.0)
    assert tail.poll() == (4, 13.0)


def test_render_many_devices_and_large_energy():
    snap = LiveSnapshot(elapsed_s=3725, power_w={f"gpu:{i}": 600.0 for i in range(8)}, energy_j=2.5e6, steps=10,
                        tokens=1e6)
    line = render(snap, 2.0)
    assert line == "wattprof 1:02:05 | 8 devices 4800 W | 2500.00 kJ | 10 steps 2.0/s | 2.5 J/token"
    assert "no power reading yet" in render(LiveSnapshot(elapsed_s=0.0), None)


def test_a_failing_stats_fn_never_raises():
    def broken() -> LiveSnapshot:
        raise RuntimeError("disk gone")

    buf = io.StringIO()
    LiveStatus(broken, buf, tty=False).refresh()
    assert "live status unavailable (RuntimeError: disk gone)" in buf.getvalue()


# ---- `wattprof record` with the live status (the lead wires --progress / --quiet) -------------------



CHILD = ("import time, wattprof\n"
         "with wattprof.profile() as prof:\n"
         "    for i in range(8):\n"
         "        with prof.step(tokens=100):\n"
         "            time.sleep(0.25)\n")



def _record_on_pty(tmp_path: Path, *flags: str) -> str:
    env = dict(os.environ)
    env.pop("WATTPROF_RUN_DIR", None)
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "wattprof", "record", *flags, "--out", str(tmp_path / "run"),
                          "-c", "nvml-replay", "--interval", "0.05", "--", sys.executable, "-c", CHILD],
                         stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO)
    os.close(slave)
    try:
        text = read_pty(master, 30.0 if p.poll() is None else 1.0)
        p.wait(timeout=30)
    finally:
        os.close(master)
    assert p.returncode == 0, text
    return text


def test_record_on_a_terminal_shows_the_live_line(tmp_path):
    text = _record_on_pty(tmp_path)
    frames = [f for f in text.split("\r") if "wattprof 0:00:0" in f]
    assert len(frames) >= 2, text
    assert re.search(r"gpu:0 \d+ W", text) and "8 steps" in text and "mJ/token" in text


def test_record_quiet_on_a_terminal_shows_no_live_line(tmp_path):
    text = _record_on_pty(tmp_path, "--quiet")
    assert "wattprof 0:00:0" not in text and "\x1b[K" not in text


def test_record_progress_off_a_terminal_prints_status_lines(tmp_path):
    p = wattprof("record", "--progress", "--out", str(tmp_path / "run"), "-c", "nvml-replay", "--interval", "0.05",
                 "--", sys.executable, "-c", CHILD)
    assert p.returncode == 0, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.startswith("wattprof 0:00:0")]
    assert len(lines) >= 2 and "\r" not in p.stderr
    assert "8 steps" in lines[-1]
    p = wattprof("record", "--out", str(tmp_path / "run2"), "-c", "nvml-replay", "--", sys.executable, "-c", CHILD)
    assert "wattprof 0:00:0" not in p.stderr  # not a terminal, no --progress: no status lines


def test_steps_written_as_json_are_counted_by_the_tail(tmp_path):
    """The child's steps file format (api.Profile) is what the tail reads."""
    import wattprof

    with wattprof.profile(out=tmp_path / "r", collectors=["nvml-replay"], sampler="thread", interval=0.05) as prof:
        for _ in range(3):
            prof.mark(tokens=10)
        assert StepTail(prof.run_dir).poll() == (3, 30.0)
    assert json.loads((tmp_path / "r" / "meta.json").read_text())["status"] == "finished"
