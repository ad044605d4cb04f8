"""Issue 12, second pass of faults and bad input: races on the run directory, secrets on the
command line, collectors and samplers that die, runs left behind by a crashed recorder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
from conftest import wattprof, wattprof_in_process
from faultkit import events, meta

from wattprof.errors import RunError
from wattprof.run import Run, RunWriter


def _claim(out, barrier: threading.Barrier, won: list[str], lost: list[str]) -> None:
    barrier.wait()
    try:
        won.append(RunWriter.create(out, name="racer").meta["id"])
    except RunError as e:
        lost.append(str(e))


def test_two_writers_racing_for_one_directory_exactly_one_wins(tmp_path):
    """Item 5: claiming a run directory is atomic (link(2) of a complete meta.json): of writers
    started at the same instant on the same --out, exactly one gets it, the others a RunError."""
    for attempt in range(20):
        out = tmp_path / f"run{attempt}"
        barrier = threading.Barrier(4)
        won: list[str] = []
        lost: list[str] = []
        threads = [threading.Thread(target=_claim, args=(out, barrier, won, lost)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1 and len(lost) == 3, (won, lost)
        assert all("already holds a run" in m for m in lost)
        assert json.loads((out / "meta.json").read_text())["id"] == won[0]
        assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow  # seconds of real time are the point (a real record, killed or hanging)
def test_two_record_processes_on_the_same_out_one_is_refused(tmp_path):
    """Item 5 through the CLI: the second `record --out SAME` says the directory holds a run."""
    run = tmp_path / "run"
    env = dict(os.environ)
    env.pop("WATTPROF_RUN_DIR", None)
    cmd = [sys.executable, "-m", "wattprof", "record", "-q", "--out", str(run), "-c", "nvml-replay", "--",
           sys.executable, "-c", "import time; time.sleep(1.5)"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in outs)
    assert codes[0] == 0 and codes[1] != 0, outs
    assert any("already holds a run" in err for _, err in outs)
    m = meta(run)
    assert m["status"] == "finished"


@pytest.mark.parametrize("args, hidden", [
    (["--password=hunter2", "--epochs", "1"], "hunter2"),
    (["--hf-token", "hf_abcdef123456"], "hf_abcdef123456"),
    (["API_KEY=sk-live-0123456789"], "sk-live-0123456789"),
    (["--client-secret", "s3cr3t-value"], "s3cr3t-value"),
])
def test_secret_looking_arguments_are_redacted_in_meta_and_every_report(tmp_path, args, hidden):
    """Decided in issue 12: values of arguments whose names look secret (password, token, key,
    secret) are recorded as *** in meta.json, so no report (text, JSON, Markdown, HTML) shows
    them; the program itself receives the real values."""
    run = tmp_path / "run"
    seen = tmp_path / "argv.json"
    child = f"import json, sys; json.dump(sys.argv[1:], open({str(seen)!r}, 'w'))"
    p = wattprof("record", "-q", "--out", str(run), "-c", "nvml-replay", "--", sys.executable, "-c", child, *args)
    assert p.returncode == 0, p.stderr
    assert json.loads(seen.read_text()) == args  # the program got the real value
    m = meta(run)
    assert "***" in " ".join(m["command"])
    assert hidden not in " ".join(m["command"])
    for fmt in ("text", "json", "markdown", "html"):
        r = wattprof_in_process("report", str(run), "--format", fmt)
        assert r.returncode == 0, r.stderr
        assert hidden not in r.stdout
    for f in run.rglob("*"):
        if f.is_file():
            assert hidden.encode() not in f.read_bytes(), f


def _start_recording(run, seconds: float = 60.0) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("WATTPROF_RUN_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "wattprof", "record", "-q", "--out", str(run), "-c", "nvml-replay",
                             "--interval", "0.05", "--", sys.executable, "-c", f"import time; time.sleep({seconds})"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(run.glob("samples-*.arrows")):
        time.sleep(0.05)
    time.sleep(1.5)  # a flush or two on disk
    return proc


def _kill_recorder(proc: subprocess.Popen) -> None:
    """``kill -9`` the recorder (a crash), then the command it ran, which would sleep on otherwise."""
    import psutil

    children = psutil.Process(proc.pid).children(recursive=True)
    try:
        proc.kill()
        proc.wait(timeout=10)
    finally:
        for c in children:
            with contextlib.suppress(psutil.Error):
                c.kill()


@pytest.mark.slow  # seconds of real time are the point (a real record, killed or hanging)
def test_import_into_a_run_being_recorded_is_refused_clearly(tmp_path, h100):
    """Item 8: `import` into a run while `record` writes it was a lost update (`finalize` rewrote
    meta.json from memory, the import's source vanished). Now the import is refused with a
    one-line message while the recorder is alive, and the run finishes intact."""
    run = tmp_path / "run"
    proc = _start_recording(run, seconds=4)
    try:
        p = wattprof_in_process("import", str(run), "--steps", str(h100 / "steps.jsonl"))
        assert p.returncode == 2, p.stderr
        assert "still being recorded" in p.stderr and "Traceback" not in p.stderr
        assert not list(run.glob("steps-import*"))
    finally:
        proc.wait(timeout=120)
    assert meta(run)["status"] == "finished"
    # finished: allowed (steps inside the run's samples: steps all outside them are refused, issue 11)
    t = Run.open(run).samples["t"]
    inside = tmp_path / "inside.jsonl"
    inside.write_text("".join(json.dumps({"t_start": a, "t_end": a + 0.5, "tokens": 10, "label": "train"}) + "\n"
                              for a in (float(t.min()) + 0.5, float(t.min()) + 1.5)))
    p = wattprof_in_process("import", str(run), "--steps", str(inside))
    assert p.returncode == 0, p.stderr
    assert any(s.get("format") == "steps-jsonl" for s in meta(run)["sources"].values())


@pytest.mark.slow  # seconds of real time are the point (a real record, killed or hanging)
def test_repair_finalises_a_run_whose_recorder_was_killed_and_cleans_its_leftovers(tmp_path):
    """Item 14: a crashed run kept `.reserve` and `.tmp` files for ever and stayed `recording`.
    `wattprof repair RUN` finalises it: Parquet, status `interrupted`, an event and an error line
    saying why, leftovers removed; samples kept. Refused while the recorder is alive."""

    run = tmp_path / "run"
    proc = _start_recording(run)
    try:
        alive = wattprof_in_process("repair", str(run))
        assert alive.returncode == 2 and "still being recorded" in alive.stderr, alive.stderr
    finally:
        _kill_recorder(proc)
    (run / ".meta.json.abc123.tmp").write_text("{")  # a write cut short by the crash
    assert (run / ".reserve").exists() and meta(run)["status"] == "recording"
    before = len(Run.open(run).samples)
    assert before > 10
    p = wattprof_in_process("repair", str(run))
    assert p.returncode == 0, p.stderr
    assert not (run / ".reserve").exists() and not list(run.glob(".*.tmp"))
    assert not list(run.glob("samples-*.arrows")) and list(run.glob("samples-*.parquet"))
    m = meta(run)
    assert m["status"] == "interrupted" and any("repair" in e for e in m["errors"])
    assert len(Run.open(run).samples) == before
    assert "repaired" in [e["kind"] for e in events(run)]
    rep = wattprof_in_process("report", str(run))
    assert rep.returncode == 0 and "interrupted" in rep.stdout, rep.stderr
    again = wattprof_in_process("repair", str(run))
    assert again.returncode == 0 and "nothing to repair" in again.stderr


@pytest.mark.slow  # seconds of real time are the point (a real record, killed or hanging)
def test_report_finalises_a_run_whose_recorder_is_gone_and_leaves_a_live_one_alone(tmp_path):
    """Item 14: `wattprof report` on a crashed run reported it as unfinished and left its `.reserve`,
    `.tmp` and Arrow streams for ever. Now it finalises the run first, as `wattprof repair` does,
    and says so in one line on stderr; a run whose recorder is alive is reported read-only."""

    run = tmp_path / "run"
    proc = _start_recording(run)
    try:
        live = wattprof_in_process("report", str(run))
        assert live.returncode == 0 and "finalised" not in live.stderr, live.stderr
        assert "unfinished" in live.stdout and "never finished" in live.stdout
        assert meta(run)["status"] == "recording" and (run / ".reserve").exists()
        assert list(run.glob("samples-*.arrows")) and not list(run.glob("samples-*.parquet"))
    finally:
        _kill_recorder(proc)
    (run / ".meta.json.abc123.tmp").write_text("{")  # a write cut short by the crash
    before = len(Run.open(run).samples)
    p = wattprof_in_process("report", str(run))
    assert p.returncode == 0, p.stderr
    said = [line for line in p.stderr.splitlines() if "finalised" in line]
    assert len(said) == 1 and "recorder is gone" in said[0] and "removed .reserve" in said[0], p.stderr
    assert "interrupted" in p.stdout
    assert not (run / ".reserve").exists() and not list(run.glob(".*.tmp"))
    assert not list(run.glob("samples-*.arrows")) and list(run.glob("samples-*.parquet"))
    m = meta(run)
    assert m["status"] == "interrupted" and any("wattprof report" in e for e in m["errors"])
    assert len(Run.open(run).samples) == before
    again = wattprof_in_process("report", str(run))
    assert again.returncode == 0 and "finalised" not in again.stderr and again.stdout == p.stdout


def test_merging_a_run_with_itself_is_refused(tmp_path, h100):
    """Item 14: `merge R R` (or a copy of R) used to count R twice."""
    run = tmp_path / "r"
    assert wattprof_in_process("import", str(run), "--samples", str(h100 / "nvidia-smi-query-100ms.csv")).returncode == 0
    p = wattprof_in_process("merge", str(run), str(run), "-o", str(tmp_path / "m"))
    assert p.returncode == 2 and "never with itself" in p.stderr, p.stderr
    shutil.copytree(run, tmp_path / "copy")
    p = wattprof_in_process("merge", str(run), str(tmp_path / "copy"), "-o", str(tmp_path / "m"))
    assert p.returncode == 2 and "copies of one run" in p.stderr, p.stderr
    assert not (tmp_path / "m" / "meta.json").exists()


def test_a_dead_sampler_never_fails_the_profiled_program(tmp_path):
    """Item 2: when the profile() sampler process is killed with SIGKILL inside the `with` block,
    `__exit__` used to raise RunError (the user's code after the block never ran) and the run
    stayed unfinished. Now the profiled process finalises the run itself (status kept, an event
    and an error line saying what was lost), warns once, and the program goes on to exit 0."""
    run = tmp_path / "run"
    prog = f"""
import os, signal, time, warnings
import wattprof
warnings.simplefilter("always")
with wattprof.profile("dead-sampler", collectors=["nvml-replay"], interval=0.05, out={str(run)!r}) as prof:
    for i in range(10):
        with prof.step(tokens=10):
            time.sleep(0.1)
    os.kill(prof._sampler_proc.proc.pid, signal.SIGKILL)
    time.sleep(0.3)
    with prof.step(tokens=10):
        time.sleep(0.05)
print("after the block")
"""
    env = dict(os.environ)
    env.pop("WATTPROF_RUN_DIR", None)
    p = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "after the block" in p.stdout
    assert p.stderr.count("RuntimeWarning") == 1 and "killed by signal 9" in p.stderr, p.stderr
    m = meta(run)
    assert m["status"] == "finished" and any("sampler process was killed" in e for e in m["errors"])
    assert not list(run.glob("samples-*.arrows")) and not (run / ".reserve").exists()
    r = Run.open(run)
    assert len(r.samples) > 5 and len(r.steps) == 11
    assert "repaired" in [e["kind"] for e in events(run)]


@pytest.mark.slow  # seconds of real time are the point (a real record, killed or hanging)
@pytest.mark.parametrize("how", ["delete", "truncate"])
def test_a_live_stream_deleted_or_truncated_from_outside_says_what_was_lost(tmp_path, how):
    """Item 13: a live sample stream deleted or truncated from outside during recording ended as
    "finished", 0 J, no error. Now the loss is a `storage_error` event, a line in meta.json's
    errors and a report flag; recording goes on in a new file, so later samples are kept."""
    run = tmp_path / "run"
    proc = _start_recording(run, seconds=5)
    try:
        stream = next(run.glob("samples-*.arrows"))
        if how == "delete":
            stream.unlink()
        else:
            os.truncate(stream, stream.stat().st_size // 2)
        cut_at = time.time()
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0, proc.stderr.read()
    m = meta(run)
    word = "deleted" if how == "delete" else "truncated"
    assert any(word in e and "lost" in e for e in m["errors"]), m["errors"]
    assert any(e["kind"] == "storage_error" and word in e["message"] for e in events(run))
    r = Run.open(run)
    assert (r.samples["t"] > cut_at + 1.0).sum() > 10  # recording went on
    rep = wattprof_in_process("report", str(run))
    assert rep.returncode == 0 and word in rep.stdout, rep.stdout


@pytest.mark.slow  # seconds of real time are the point (a real record, killed or hanging)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_the_recorded_program_gets_sigterm_when_record_is_killed_with_sigkill(tmp_path):
    """Decided in issue 12: `kill -9` of `wattprof record` used to leave the child running, with
    nobody to forward signals or wait for it. The child now asks the kernel for SIGTERM when its
    parent dies (prctl PR_SET_PDEATHSIG), so it shuts down as on any SIGTERM."""
    import psutil

    run = tmp_path / "run"
    pidfile = tmp_path / "child.pid"
    child = (f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(120)")
    env = dict(os.environ)
    env.pop("WATTPROF_RUN_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "wattprof", "record", "-q", "--out", str(run), "-c", "nvml-replay",
                             "--", sys.executable, "-c", child], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not (pidfile.exists() and pidfile.read_text()):
        time.sleep(0.05)
    pid = int(pidfile.read_text())
    try:
        proc.kill()
        proc.wait(timeout=10)
        gone = False
        for _ in range(100):
            if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                gone = True
                break
            time.sleep(0.05)
        assert gone, "the recorded program outlived `wattprof record` killed with SIGKILL"
    finally:
        with contextlib.suppress(psutil.Error, OSError):
            psutil.Process(pid).kill()
