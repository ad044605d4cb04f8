from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The captures the tests and benchmarks read ship in tests/fixtures (copied from the project's shared
# captures, READMEs kept); WATTPROF_FIXTURES points every test and benchmark at another copy.
FIXTURES = Path(os.environ.get("WATTPROF_FIXTURES", REPO / "tests" / "fixtures"))
H100 = FIXTURES / "nvidia-h100"
H100_GPM = FIXTURES / "nvidia-h100-gpm"
H100_SERVE = FIXTURES / "nvidia-h100-serve"
NEURON = FIXTURES / "aws-neuron"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False,
                     help="the thorough variants too: fuzzing with 200 examples a reader instead of 50 "
                          "(.ci/run passes it); tests marked slow run either way (-m 'not slow' skips them)")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--slow"):  # read by tests/fuzz/fuzzkit.py when the fuzz tests are collected
        os.environ.setdefault("WATTPROF_FUZZ_EXAMPLES", "200")


def fixture_dir(path: Path) -> Path:
    if not path.is_dir():
        pytest.fail(f"fixture directory {path} missing: tests need tests/fixtures "
                    "(or set WATTPROF_FIXTURES to a copy of the captures)")
    return path


def phases(path: Path) -> dict[str, dict]:
    return {p["phase"]: p for p in json.loads((path / "phases.json").read_text())}


def wattprof(*args: str, env: dict | None = None, cwd: str | Path | None = None,
             timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
    """Run the CLI in a real subprocess, as a user would."""
    full_env = dict(os.environ)
    full_env.pop("WATTPROF_RUN_DIR", None)
    if env:
        full_env.update(env)
    p = subprocess.run([sys.executable, "-m", "wattprof", *args], capture_output=True, text=True, env=full_env,
                       cwd=cwd, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"wattprof {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def wattprof_in_process(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    """The CLI run in this process (click's test runner), for commands that only read and write
    files (``report``, ``compare``, ``nightly``, ``import``): the same exit status, stdout and
    stderr as :func:`wattprof` (log lines and an unexpected traceback included), without a new
    interpreter importing pandas and pyarrow (~1 s of CPU a call). Anything that spawns, signals
    or depends on the environment (``record``) keeps :func:`wattprof`."""
    import logging
    import traceback

    from click.testing import CliRunner

    from wattprof.cli import main

    class _Stderr(logging.Handler):  # the logging main() sets up goes to the stderr of the moment
        def emit(self, record: logging.LogRecord) -> None:
            sys.stderr.write(f"wattprof: {record.getMessage()}\n")

    handler = _Stderr(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        r = CliRunner().invoke(main, list(args), catch_exceptions=True)
    finally:
        root.removeHandler(handler)
    stderr, code = r.stderr, r.exit_code
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(r.exception))
        code = 1
    if check and code != 0:
        raise AssertionError(f"wattprof {' '.join(args)} exited {code}:\n{r.stdout}\n{stderr}")
    return subprocess.CompletedProcess(["wattprof", *args], code, r.stdout, stderr)


@pytest.fixture
def h100() -> Path:
    return fixture_dir(H100)


@pytest.fixture
def h100_gpm() -> Path:
    return fixture_dir(H100_GPM)


@pytest.fixture
def h100_serve() -> Path:
    return fixture_dir(H100_SERVE)


@pytest.fixture(autouse=True)
def _no_inherited_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATTPROF_RUN_DIR", raising=False)
    monkeypatch.delenv("WATTPROF_RUN_ID", raising=False)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of a headless Chromium; skipped where there is none, a failure under CI."""
    from chromium import find_chromium

    return find_chromium()


def need(module: str):
    """Import an optional package the test needs: skipped where it is not installed, a failure under
    CI (.ci/run installs torch, transformers and lightning, and these tests are the proof)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        msg = f"{module} is not installed (pip install torch==2.13.0 -e '.[hf,lightning]'; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg, allow_module_level=True)


def collect(c, seconds: float, *, min_rows: int = 0, patience: float = 10.0) -> tuple[list[dict], list[str]]:
    """Call read() like the recorder does for ``seconds``: (rows, messages of raised errors and of
    the events the collector reported). With ``min_rows``, go on (up to ``patience`` s more) until
    that many rows came: on a loaded machine the fake executable can take longer than ``seconds``
    to start."""
    from wattprof.errors import CollectorError

    rows, errors = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end or (len(rows) < min_rows and time.monotonic() < end + patience):
        try:
            rows += c.read()
        except CollectorError as e:  # a collector's own error: kept, like the recorder does
            errors.append(str(e))
        errors += [e.message for e in c.take_events()]
        time.sleep(0.05)
    return rows, errors
