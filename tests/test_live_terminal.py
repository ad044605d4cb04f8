"""Under `wattprof record` on a terminal, the live status line and the command's own output never
share a line: the status has the bottom row to itself (the screen is checked with a VT100
emulator), and `-q --progress` is refused."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest
from conftest import wattprof
from test_live import read_pty

CHILD = ("import time, sys, wattprof\n"
         "with wattprof.profile() as prof:\n"
         "    for i in range(6):\n"
         "        with prof.step(tokens=100):\n"
         "            time.sleep(0.4)\n"
         "        print(f'child line {i}', flush=True)\n"
         "        sys.stderr.write(f'child err {i}\\n'); sys.stderr.flush()\n")

ROWS, COLS = 120, 100


def test_child_output_is_never_glued_to_the_status_line(tmp_path):
    pyte = pytest.importorskip("pyte", reason="pyte (a VT100 emulator) is in the [dev] extra")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    env = dict(os.environ)
    env.pop("WATTPROF_RUN_DIR", None)
    env["COLUMNS"] = str(COLS)
    p = subprocess.Popen([sys.executable, "-m", "wattprof", "record", "--out", str(tmp_path / "run"), "-c",
                          "nvml-replay", "--interval", "0.05", "--", sys.executable, "-c", CHILD],
                         stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    try:
        raw = read_pty(master, 40.0)
        p.wait(timeout=30)
    finally:
        os.close(master)
    assert p.returncode == 0, raw
    screen = pyte.Screen(COLS, ROWS)
    pyte.ByteStream(screen).feed(raw.encode())
    rows = [line.rstrip() for line in screen.display]
    for i in range(6):  # each of the command's lines is alone on its row
        assert f"child line {i}" in rows and f"child err {i}" in rows, "\n".join(rows)
    assert not any("wattprof 0:00" in r and "child" in r for r in rows)
    assert any(r.startswith("wattprof 0:00:0") for r in rows)  # the final status line, on its own row
    assert "\x1b[r" in raw  # the scroll region is given back to the terminal


def test_quiet_with_progress_is_a_usage_error():
    p = wattprof("record", "-q", "--progress", "--", sys.executable, "-c", "pass")
    assert p.returncode == 2 and "--quiet and --progress" in p.stderr
