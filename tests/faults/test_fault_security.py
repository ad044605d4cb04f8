"""Security properties of the code and of what a run writes (real `wattprof record` processes)."""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHILD = """
import wattprof
with wattprof.profile() as prof:
    with prof.step(tokens=1, label="train"):
        pass
"""


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("WATTPROF_RUN_DIR", None)
    env.pop("WATTPROF_RUN_ID", None)
    env.update(extra)
    return env


def _record(run: Path, *, env: dict[str, str], umask: int = -1) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wattprof", "record", "--out", str(run), "-q", "-c", "nvml-replay",
                           "-c", "host", "--interval", "0.05", "-t", "commit=abc", "--", sys.executable, "-c", CHILD],
                          env=env, capture_output=True, text=True, timeout=120, umask=umask)


def test_no_shell_pickle_or_eval_in_the_package():
    """Guarantee: wattprof runs no shell (commands are argv lists), unpickles nothing and evaluates
    no strings (`grep -rn "shell=True\\|pickle\\|eval(" wattprof/` finds nothing)."""
    pattern = re.compile(r"shell=True|pickle|eval\(")
    hits = [f"{p.relative_to(REPO)}:{n}: {line.strip()}"
            for p in sorted((REPO / "wattprof").rglob("*.py"))
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("umask", [0o027, 0o077])
def test_run_directory_permissions_follow_the_umask(tmp_path, umask):
    """Guarantee: the run directory and every file in it (meta.json, samples, steps, events,
    summary) get the permissions the umask allows, no more (nothing world-readable under 027 or
    077, nothing group-readable under 077), as any file the user creates would."""
    run = tmp_path / "runs" / "run"
    p = _record(run, env=_env(), umask=umask)
    assert p.returncode == 0, p.stderr
    paths = [run.parent, run, *run.iterdir()]
    assert len(paths) >= 6, [x.name for x in paths]
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        want = (0o777 if path.is_dir() else 0o666) & ~umask
        assert mode == want, f"{path.name}: {oct(mode)}, expected {oct(want)} under umask {oct(umask)}"


def test_no_environment_or_credentials_in_the_run(tmp_path):
    """Guarantee: a run records its command line, never its environment: secret-looking variables
    of `wattprof record`'s environment (and so of the recorded program's) appear in no file of the
    run directory, and meta.json holds only the documented keys."""
    secret = {"AWS_SECRET_ACCESS_KEY": "supersecret-" + secrets.token_hex(8),
              "MY_SERVICE_API_TOKEN": "tok-" + secrets.token_hex(8),
              "DATABASE_PASSWORD": "pw-" + secrets.token_hex(8)}
    run = tmp_path / "run"
    p = _record(run, env=_env(**secret))
    assert p.returncode == 0, p.stderr
    files = [f for f in run.rglob("*") if f.is_file()]
    assert any(f.name.startswith("steps-") for f in files) and any(f.suffix == ".parquet" for f in files)
    for f in files:
        data = f.read_bytes()
        for name, value in secret.items():
            assert value.encode() not in data, f"{name}'s value found in {f.name}"
            assert name.encode() not in data, f"{name} found in {f.name}"
    meta = json.loads((run / "meta.json").read_text())
    assert set(meta) <= {"format", "id", "name", "tags", "command", "host", "wattprof_version", "started_at",
                         "ended_at", "status", "exit_code", "interval_s", "devices", "sources", "errors"}
    assert set(meta["host"]) <= {"hostname", "pid"}
    assert meta["tags"] == {"commit": "abc"} and meta["command"] == [sys.executable, "-c", CHILD]
