"""The recording-session layer: one RecordingSession (options in, a finalised run out) under
profile(), the sampler process, `wattprof record` and the callbacks; explicit options instead of
hidden state (rank, the run to join, no profile started behind the user's back)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import phases

import wattprof
from wattprof import api
from wattprof.clock import ManualClock
from wattprof.errors import InputError, WattprofError
from wattprof.options import DEFAULT_INTERVAL_S, ProfileOptions, RecordOptions
from wattprof.recording.session import RecordingSession
from wattprof.run import Run, RunWriter


def _replay(h100: Path) -> str:
    return f"nvml-replay:trace={h100 / 'nvml_samples_10ms.csv'},start=trace"


def test_a_session_records_the_train_phase_of_the_h100_trace_and_finalises_it(tmp_path, h100):
    """Options in, finalised run out: the replayed counter over the train phase is the capture's."""
    train = phases(h100)["train"]
    clock = ManualClock(train["t_start"])
    opts = RecordOptions(out=tmp_path / "run", name="train-phase", tags={"k": "v"}, collectors=(_replay(h100),),
                         interval_s=0.1)
    session = RecordingSession(opts, clock=clock).start(background=False)  # ticks driven here
    assert session.meta["status"] == "recording" and "gpu:0" in session.meta["devices"]
    session.recorder.sample_once()
    while clock.time() < train["t_end"]:
        clock.advance(0.1)
        session.recorder.sample_once()
    result = session.stop("finished", 0)

    assert result.finalised and result.run_dir == tmp_path / "run" and (result.run_dir / "summary.json").is_file()
    run = result.open()
    assert run.status == "finished" and run.meta["exit_code"] == 0
    assert run.name == "train-phase" and run.meta["tags"] == {"k": "v"}
    assert run.interval_s == 0.1 and run.meta["interval_s"] == 0.1
    rep = run.report(bottlenecks=False)
    assert rep.devices[0].energy_source == "counter"
    # 10 Hz ticks on the 10 ms capture: the window's edges fall within one interval of the phase's
    assert rep.energy_j == pytest.approx(train["energy_counter_mj"] / 1000, rel=0.01)
    assert session.stop("failed") is result  # idempotent: the run is not finalised twice


def test_a_session_that_cannot_write_its_final_meta_says_so_and_does_not_raise(tmp_path, h100):
    """The disk refusing meta.json at the end never breaks the recorded program: the result says so."""
    clock = ManualClock(phases(h100)["idle_start"]["t_start"])
    session = RecordingSession(RecordOptions(out=tmp_path / "run", collectors=(_replay(h100),)), clock=clock)
    session.start(background=False)
    for _ in range(5):
        clock.advance(0.1)
        session.recorder.sample_once()
    (tmp_path / "run" / "meta.json").unlink()
    (tmp_path / "run" / "meta.json").mkdir()  # the final rename onto it fails
    result = session.stop("finished", 0)
    assert not result.finalised and "meta" in result.error
    assert not (tmp_path / "run" / "summary.json").exists()


def test_an_unavailable_collector_is_refused_before_a_run_is_created(tmp_path):
    session = RecordingSession(RecordOptions(out=tmp_path / "run", collectors=("nvml-replay:trace=/nope.csv",)))
    with pytest.raises(WattprofError):
        session.start()
    assert not (tmp_path / "run" / "meta.json").exists()


def test_record_options_cross_to_the_sampler_as_one_checked_json_object(tmp_path):
    opts = RecordOptions(out=tmp_path / "r", name="n", tags={"commit": "abc"}, collectors=("host",), interval_s=0.25,
                         command=("python", "x.py"))
    assert RecordOptions.from_json(opts.to_json()) == opts
    with pytest.raises(InputError, match="unknown field"):
        RecordOptions.from_json(json.dumps({"interval": 0.1}))
    with pytest.raises(InputError, match="positive"):
        RecordOptions(interval_s=0)
    assert RecordOptions().interval_s == ProfileOptions().interval_s == DEFAULT_INTERVAL_S


def test_the_sampler_process_gets_its_options_on_stdin_not_in_argv(tmp_path):
    """Tags (which may name a customer or a commit) are not on every `ps` listing, and the
    interval reaches the run's meta through the options alone."""
    with wattprof.profile("p", collectors=["nvml-replay"], interval=0.05, out=tmp_path / "r",
                          tags={"secret": "tag-value-123"}, sampler="process", verbose=False) as prof:
        proc = prof._sampler_proc.proc
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode() if Path("/proc").is_dir() else ""
        argv = " ".join(proc.args) + cmdline
        with prof.step(tokens=3):
            time.sleep(0.1)
    assert "tag-value-123" not in argv and "interval" not in argv
    run = Run.open(tmp_path / "r")
    assert run.status == "finished" and run.interval_s == 0.05 and run.meta["tags"] == {"secret": "tag-value-123"}
    assert list(run.steps["tokens"]) == [3]


def test_current_only_looks_and_a_step_under_record_joins_explicitly(tmp_path, monkeypatch):
    """`current()` never starts a profile (nor an atexit hook); `wattprof.step()` in a process under
    `wattprof record` writes into that run through join_recorded_run(), which starts no sampler."""
    import atexit

    w = RunWriter.create(tmp_path / "parent", name="parent")
    monkeypatch.setenv(api.ENV_RUN_DIR, str(tmp_path / "parent"))
    monkeypatch.setattr(api, "_recorded_join", None)
    hooks = atexit._ncallbacks()
    with pytest.raises(WattprofError, match="no active wattprof profile"):
        api.current()
    assert not list((tmp_path / "parent").glob("steps-*.jsonl"))

    with wattprof.step(tokens=7, label="child"):
        pass
    joined = api.join_recorded_run()
    assert joined is not None and joined.joined and joined.session is None and joined._sampler_proc is None
    assert api.join_recorded_run() is joined  # one per process
    assert atexit._ncallbacks() == hooks
    joined.stop()
    w.finalize(status="finished")
    steps = Run.open(tmp_path / "parent").steps
    assert list(steps["tokens"]) == [7] and list(steps["label"]) == ["child"]


def test_a_recorded_run_dir_without_a_run_is_said_once_and_records_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(api.ENV_RUN_DIR, str(tmp_path / "gone"))
    monkeypatch.setattr(api, "_recorded_join", None)
    monkeypatch.setattr(api, "_recorded_join_warned", False)
    with pytest.warns(RuntimeWarning, match="holds no run"):
        wattprof.mark(tokens=1)
    wattprof.mark(tokens=1)  # said once
    assert not (tmp_path / "gone").exists() and not list(tmp_path.iterdir())


def test_a_profile_joins_a_given_run_with_an_explicit_rank_leaving_the_environment_alone(tmp_path, monkeypatch):
    monkeypatch.delenv(api.ENV_RUN_DIR, raising=False)
    w = RunWriter.create(tmp_path / "node0")
    with wattprof.profile(join=tmp_path / "node0", rank=3, verbose=False) as prof:
        assert prof.joined and prof.rank == 3 and api.ENV_RUN_DIR not in os.environ
        prof.mark(tokens=2)
    w.finalize(status="finished")
    assert [p.name.split("-")[1] for p in (tmp_path / "node0").glob("steps-*.jsonl")] == ["3"]
    assert list(Run.open(tmp_path / "node0").steps["rank"]) == [3]
    with pytest.raises(WattprofError, match="holds no run"):
        wattprof.profile(join=tmp_path / "nothing", verbose=False).start()


def test_node_profile_gives_every_local_rank_its_rank_and_the_leaders_run(tmp_path, monkeypatch):
    from wattprof import distributed

    monkeypatch.delenv(api.ENV_RUN_DIR, raising=False)
    opts = ProfileOptions(collectors=("nvml-replay",), interval_s=0.05, sampler="thread", verbose=False)
    leader = distributed.node_profile(tmp_path / "job", name="ddp", options=opts,
                                      info=distributed.DistInfo(rank=0, world_size=2, local_world_size=2))
    other = distributed.node_profile(tmp_path / "job", name="ddp", options=opts, timeout=10,
                                     info=distributed.DistInfo(rank=1, local_rank=1, world_size=2, local_world_size=2))
    assert not leader.joined and other.joined and other.run_dir == leader.run_dir == tmp_path / "job"
    assert api.ENV_RUN_DIR not in os.environ or os.environ[api.ENV_RUN_DIR] == str((tmp_path / "job").resolve())
    leader.mark(tokens=1)
    other.mark(tokens=1)
    other.stop()
    leader.stop()
    run = Run.open(tmp_path / "job")
    assert run.status == "finished" and sorted(run.steps["rank"]) == [0, 1] and run.name == "ddp"


def test_the_callback_core_records_steps_and_reports_energy_so_far(tmp_path, monkeypatch):
    """What the HF and Lightning callbacks share, driven on its own."""
    from wattprof import distributed
    from wattprof.integrations._core import CallbackCore

    monkeypatch.delenv(api.ENV_RUN_DIR, raising=False)
    core = CallbackCore(ProfileOptions(name="cb", out=tmp_path / "run", collectors=("nvml-replay",),
                                       interval_s=0.05, label="train", sampler="thread", verbose=False),
                        flush_every=2)
    assert core.start(distributed.DistInfo())
    assert not core.start(distributed.DistInfo())  # already recording
    for step in range(1, 4):
        t0 = core.now()
        time.sleep(0.45)
        core.add_step(t0, core.now(), 10, step=step)
    assert core.tokens_written == 20  # two flushed, one pending
    so_far = core.energy_so_far()
    assert so_far is not None and so_far.energy_j > 0 and so_far.power_w is not None and so_far.power_w > 0
    core.close("finished")
    core.close("failed")  # idempotent
    run = Run.open(tmp_path / "run")
    assert run.status == "finished" and list(run.steps["step"]) == [1, 2, 3]
    assert set(run.steps["label"]) == {"train"} and run.steps["tokens"].sum() == 30


def test_the_session_example_records_and_reports(tmp_path):
    """examples/record_session.py (docs/recording.md) runs as documented."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in (api.ENV_RUN_DIR, api.ENV_RUN_ID)}
    p = subprocess.run([sys.executable, str(repo / "examples" / "record_session.py"), str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    assert "finished:" in p.stdout and "sampled every 0.05 s" in p.stdout
    run = Run.open(tmp_path / "run")
    assert run.status == "finished" and run.meta["tags"] == {"example": "session"} and len(run.samples) > 10


def test_record_interval_reaches_the_runs_meta_and_an_imported_run_has_none(tmp_path, h100):
    """`wattprof record -i` -> RecordOptions -> RecordingSession -> meta.interval_s -> Run.interval_s;
    an imported run's period is not known (None, never a made-up default)."""
    from conftest import wattprof as cli

    p = cli("record", "-q", "-i", "0.05", "-c", "nvml-replay", "--out", str(tmp_path / "rec"), "--",
            "python3", "-c", "import time; time.sleep(0.5)")
    assert p.returncode == 0, p.stderr
    assert Run.open(tmp_path / "rec").interval_s == 0.05
    assert cli("import", str(tmp_path / "imp"), "--samples", str(h100 / "nvml_samples_10ms.csv")).returncode == 0
    assert Run.open(tmp_path / "imp").interval_s is None
