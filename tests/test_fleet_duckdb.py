"""A fleet's history in a query engine: DuckDB reads recorded runs where they lie (docs/fleet.md).

The runs are recorded by the real recorder from the replayed H100 trace (test_nightly.replay_run);
the queries are the ones docs/fleet.md and examples/fleet ship, and they must reproduce the nightly
gate's own per-benchmark figures.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, need, wattprof_in_process
from test_nightly import replay_run

from wattprof.reports.summary import load_history

FLEET = REPO / "examples" / "fleet"
sys.path.insert(0, str(FLEET))
import query as fleet_query  # noqa: E402


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    for day in range(10):
        # "train": steady, with a 10 % regression on the last night; "serve": +/-3 % jitter
        replay_run(root / "train" / f"n{day:02d}", "train", day, 1 / 1.10 if day == 9 else 1 + 0.01 * math.sin(day))
        replay_run(root / "serve" / f"n{day:02d}", "serve", day, 1 + 0.03 * math.cos(day))
    return root


def test_duckdb_reproduces_the_nightly_gate_per_benchmark(fleet):
    need("duckdb")
    doc = json.loads(wattprof_in_process("nightly", str(fleet), "--baseline", "median:7", "-f", "json", check=True).stdout)
    gate = {b["benchmark"]: b["change"] for b in doc["benchmarks"]}
    con = fleet_query.connect(fleet)
    rows = con.sql(fleet_query.queries()["nightly"]).fetchall()
    got = {r[0]: {"latest": r[1], "baseline": r[2], "change_pct": r[3], "runs": r[4]} for r in rows}
    assert set(got) == set(gate) == {"train", "serve"}
    for bench, g in gate.items():
        assert got[bench]["runs"] == 10
        assert got[bench]["latest"] == pytest.approx(g["latest"], rel=1e-12)
        assert got[bench]["baseline"] == pytest.approx(g["baseline"], rel=1e-12)
        assert got[bench]["change_pct"] == pytest.approx(g["change_pct"], rel=1e-9)
    assert got["train"]["change_pct"] == pytest.approx(10.0, abs=1.5)


def test_duckdb_weekly_and_label_queries_add_up_to_the_runs(fleet):
    need("duckdb")
    runs = load_history([fleet])
    con = fleet_query.connect(fleet)
    qs = fleet_query.queries()
    weekly = con.sql(qs["weekly"]).fetchall()
    assert sum(r[2] for r in weekly) == len(runs) == 20
    assert sum(r[4] for r in weekly) * 1e3 == pytest.approx(sum(s.energy_j for s in runs), rel=1e-9)
    labels = con.sql(qs["costliest_labels"]).fetchall()
    want: dict[tuple[str, str], float] = {}
    for s in runs:
        for lab, v in s.by_label.items():
            want[(s.benchmark, lab)] = want.get((s.benchmark, lab), 0.0) + v["energy_j"]
    assert {(r[0], r[1]): r[3] * 1e3 for r in labels} == pytest.approx(want, rel=1e-9)
    # the costliest first
    assert [r[3] for r in labels] == sorted((r[3] for r in labels), reverse=True)


def test_fleet_example_script_prints_every_query_and_refuses_unknown_ones(fleet):
    need("duckdb")
    p = subprocess.run([sys.executable, str(FLEET / "query.py"), str(fleet)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    for name in ("weekly", "costliest_labels", "nightly"):
        assert f"-- {name}" in p.stdout
    bad = subprocess.run([sys.executable, str(FLEET / "query.py"), str(fleet), "nope"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "no query 'nope'" in bad.stderr
