"""Several processes and several nodes: one sampler per node, every rank's steps, merged shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import need, wattprof_in_process

from wattprof import distributed
from wattprof.importer import import_samples, import_steps, open_or_create
from wattprof.merge import merge_runs, offset_from_power, offset_from_steps
from wattprof.reports.build import build_report
from wattprof.run import Run

REPO = Path(__file__).resolve().parents[1]


# ---- rank detection ---------------------------------------------------------------------------------


def test_detect_torchrun_slurm_and_none():
    t = distributed.detect({"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4",
                            "GROUP_RANK": "1", "TORCHELASTIC_RUN_ID": "abc", "SLURM_PROCID": "1", "SLURM_JOB_ID": "77"})
    assert (t.rank, t.local_rank, t.world_size, t.node_rank, t.num_nodes, t.launcher) == (5, 1, 8, 1, 2, "torchrun")
    assert t.job_id == "slurm-77" and not t.is_node_leader and t.node == "node1"
    s = distributed.detect({"SLURM_PROCID": "6", "SLURM_LOCALID": "2", "SLURM_NTASKS": "8", "SLURM_NNODES": "2",
                            "SLURM_NODEID": "1", "SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0",
                            "SLURM_TASKS_PER_NODE": "4(x2)"})
    assert (s.rank, s.local_rank, s.world_size, s.local_world_size, s.node_rank, s.num_nodes) == (6, 2, 8, 4, 1, 2)
    assert s.job_id == "slurm-77.0" and s.launcher == "slurm"
    n = distributed.detect({})
    assert (n.rank, n.local_rank, n.world_size, n.num_nodes, n.launcher, n.is_node_leader) == (0, 0, 1, 1, "none", True)
    # torchrun without GROUP_RANK: node from rank // LOCAL_WORLD_SIZE
    assert distributed.detect({"RANK": "6", "LOCAL_RANK": "2", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}).node_rank == 1
    assert distributed.shard_dir("/x", t) == Path("/x/node1")
    assert distributed.shard_dir("/x", distributed.DistInfo()) == Path("/x")


# ---- two processes on one node (torchrun, gloo, CPU) ----------------------------------------------

SCRIPT = """
import os, sys, time
import torch.distributed as dist
from wattprof import distributed

use_pg = sys.argv[2] == "pg"
if use_pg:
    dist.init_process_group("gloo")
out = None if sys.argv[1] == "-" else sys.argv[1]
prof = distributed.node_profile(out, name="ddp", collectors=["nvml-replay"], interval=0.05)
rank = int(os.environ["RANK"])
for k in range(1, 6):
    t0 = prof.clock.time()
    time.sleep(0.15)
    if use_pg:
        dist.barrier()
    prof.mark(tokens=10 * (rank + 1), step=k, t_start=t0)
if use_pg:
    dist.barrier()
else:
    time.sleep(0.5)  # let the other rank finish its steps before the sampler stops (no barrier without a group)
prof.stop()
print("joined" if prof.joined else "sampled", prof.run_dir, flush=True)
"""


@pytest.mark.parametrize("mode", ["pg", "nopg"])
def test_torchrun_two_ranks_mark_steps_into_one_run_with_one_sampler(tmp_path, mode):
    need("torch")
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, WATTPROF_DIR=str(tmp_path / "runs"), PYTHONPATH=str(REPO))
    env.pop("WATTPROF_RUN_DIR", None)
    out = "-" if mode == "pg" else str(tmp_path / "runs" / "ddp")
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(script), out, mode], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert sorted(line.split()[0] for line in p.stdout.splitlines() if line.strip()) == ["joined", "sampled"]
    runs = [d for d in (tmp_path / "runs").iterdir() if d.is_dir()]
    assert len(runs) == 1, runs  # one run, not one per rank
    run = runs[0]
    assert sorted(x.name for x in run.glob("samples-*")) == ["samples-nvml-replay.parquet"]
    assert len(list(run.glob("steps-*.jsonl"))) == 2
    r = Run.open(run)
    assert r.meta["status"] == "finished" and list(r.meta["sources"]) == ["nvml-replay"]
    steps = r.steps
    assert sorted(steps["rank"].tolist()) == [0] * 5 + [1] * 5
    assert steps.groupby("rank")["tokens"].sum().to_dict() == {0: 50, 1: 100}
    rep = build_report(r)
    assert rep.steps == 10 and rep.tokens == 150
    assert [d.device for d in rep.devices] == ["gpu:0"]  # one sampler: no second copy of the GPU
    # both ranks' steps cover the same time: the label's energy is not counted twice
    assert 0 < rep.by_label["step"].energy_j <= rep.energy_j


# ---- two node shards merged -----------------------------------------------------------------------


def _shard(tmp: Path, h100: Path, name: str, shift: float, *, steps: bool = True) -> Path:
    """A node's run imported from the first 25 s of the H100 capture, its clock ``shift`` s ahead."""
    src = pd.read_csv(h100 / "nvml_samples_10ms.csv")
    t0 = float(src["t"].iloc[0])
    cut = src[src["t"] < t0 + 25.0].copy()
    for c in ("t", "t_end"):
        cut[c] = cut[c] + shift
    csv = tmp / f"{name}.csv"
    cut.to_csv(csv, index=False)
    run = tmp / name
    w = open_or_create(run, name=name)
    import_samples(w, csv, "nvml-trace-csv")
    if steps:
        rows = [json.loads(x) for x in (h100 / "steps.jsonl").read_text().splitlines() if x.strip()]
        rows = [dict(r, t_start=r["t_start"] + shift, t_end=r["t_end"] + shift) for r in rows
                if r["t_end"] < t0 + 24.0]
        sj = tmp / f"{name}-steps.jsonl"
        sj.write_text("".join(json.dumps(r) + "\n" for r in rows))
        import_steps(w, sj)
    return run


def test_merge_two_node_shards_sums_them_and_corrects_a_2s_clock_offset(tmp_path, h100):
    a = _shard(tmp_path, h100, "a", 0.0)
    b = _shard(tmp_path, h100, "b", 2.0)
    res = merge_runs([a, b], tmp_path / "merged")
    assert res.nodes == ["node0", "node1"]
    off = res.offsets["node1"]
    assert off.method == "steps" and abs(off.offset_s - 2.0) < 1e-3 and off.corrected
    assert any("node1 is +2.000 s" in f for f in res.flags), res.flags

    merged = Run.open(tmp_path / "merged")
    assert sorted(merged.devices) == ["node0/gpu:0", "node1/gpu:0"]
    assert merged.meta["merge"]["flags"] == res.flags
    assert merged.meta["nodes"]["node1"]["clock_offset"]["offset_s"] == pytest.approx(2.0, abs=1e-3)
    one = build_report(Run.open(a))
    rep = build_report(merged)
    assert {d.device for d in rep.devices} == {"node0/gpu:0", "node1/gpu:0"}
    assert rep.energy_j == pytest.approx(2 * one.energy_j, rel=1e-3)
    assert rep.steps == 2 * one.steps and rep.tokens == 2 * one.tokens
    # aligned: the steps of both nodes coincide, so the label's energy is both GPUs' energy in it
    assert rep.by_label["train"].energy_j == pytest.approx(2 * one.by_label["train"].energy_j, rel=2e-3)
    assert rep.by_label["train"].duration_s == pytest.approx(one.by_label["train"].duration_s, rel=1e-3)


def test_merge_without_correction_misattributes_and_says_so(tmp_path, h100):
    a = _shard(tmp_path, h100, "a", 0.0)
    b = _shard(tmp_path, h100, "b", 2.0)
    res = merge_runs([a, b], tmp_path / "merged", correct=False)
    assert not res.offsets["node1"].corrected and "NOT corrected" in res.flags[0]
    one = build_report(Run.open(a))
    rep = build_report(Run.open(tmp_path / "merged"))
    assert rep.energy_j == pytest.approx(2 * one.energy_j, rel=1e-3)  # totals do not depend on clocks
    # the label spans 2 s more and takes energy that is not its own: the correction above matters
    assert rep.by_label["train"].duration_s > one.by_label["train"].duration_s + 1.5


def test_clock_offset_from_power_when_steps_do_not_match(tmp_path, h100):
    a = Run.open(_shard(tmp_path, h100, "a", 0.0))
    b = Run.open(_shard(tmp_path, h100, "b", 2.0, steps=False))
    assert offset_from_steps(b.steps, a.steps) is None
    est = offset_from_power(b.samples, a.samples)
    assert est is not None and est.method == "power"
    assert est.offset_s == pytest.approx(2.0, abs=0.05) and est.score > 0.9
    res = merge_runs([a.path, b.path], tmp_path / "merged")
    assert res.offsets["node1"].method == "power" and res.offsets["node1"].corrected


def test_merged_report_has_per_node_subtotals_and_the_offset_flag(tmp_path, h100):
    a = _shard(tmp_path, h100, "a", 0.0)
    b = _shard(tmp_path, h100, "b", 2.0)
    merge_runs([a, b], tmp_path / "merged")
    rep = build_report(Run.open(tmp_path / "merged"))
    one = build_report(Run.open(a))
    assert set(rep.nodes) == {"node0", "node1"}
    for n in rep.nodes.values():
        assert n.energy_j == pytest.approx(one.energy_j, rel=1e-3)
    assert any("clock offset" in f and "node1" in f for f in rep.flags), rep.flags



def test_cli_merge_prints_the_offset_and_the_report_sums_both_nodes(tmp_path, h100):
    a = _shard(tmp_path, h100, "a", 0.0)
    b = _shard(tmp_path, h100, "b", 2.0)
    p = wattprof_in_process("merge", str(a), str(b), "-o", str(tmp_path / "m"), "--node", "left", "--node", "right")
    assert p.returncode == 0, p.stderr
    assert "right: clock offset +2.000 s" in p.stdout and "corrected" in p.stdout
    rep = json.loads(wattprof_in_process("report", str(tmp_path / "m"), "-f", "json", check=True).stdout)
    assert sorted(d["device"] for d in rep["devices"]) == ["left/gpu:0", "right/gpu:0"]
    assert any("clock offset: right is +2.000 s" in f for f in rep["flags"])
    assert wattprof_in_process("merge", str(a), "-o", str(tmp_path / "m")).returncode == 2  # already a run there



def test_steps_of_several_nodes_are_training_steps_not_overlapping_requests(tmp_path, h100):
    a = _shard(tmp_path, h100, "a", 0.0)
    b = _shard(tmp_path, h100, "b", 2.0)
    merge_runs([a, b], tmp_path / "merged")
    rep = build_report(Run.open(tmp_path / "merged"))
    assert rep.by_label["train"].output_tokens is None and rep.by_label["train"].j_per_request is None
