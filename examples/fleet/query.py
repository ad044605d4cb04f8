"""Query a directory of wattprof runs with DuckDB, where the runs lie (docs/fleet.md).

    pip install 'wattprof[fleet]'
    python examples/fleet/query.py wattprof-runs/            # every query in queries.sql
    python examples/fleet/query.py wattprof-runs/ nightly    # one of them

The views (runs, run_labels) are defined in runs.sql, the queries in queries.sql; both are plain SQL
that the DuckDB CLI, or Athena/Spark over the same files on S3, read as well.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def queries() -> dict[str, str]:
    """The named queries of queries.sql ("-- name: NAME" starts each)."""
    out: dict[str, str] = {}
    name = None
    for line in (HERE / "queries.sql").read_text(encoding="utf-8").splitlines():
        if line.startswith("-- name:"):
            name = line.split(":", 1)[1].strip()
            out[name] = ""
        elif name is not None:
            out[name] += line + "\n"
    return out


def connect(runs_dir: str | Path):
    """A DuckDB connection with the runs and run_labels views over ``runs_dir``."""
    import duckdb

    root = Path(runs_dir).resolve()
    if not root.is_dir():
        raise SystemExit(f"query.py: {runs_dir}: not a directory of runs")
    con = duckdb.connect()
    con.execute((HERE / "runs.sql").read_text(encoding="utf-8").replace("${RUNS}", root.as_posix()))
    return con


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    con = connect(argv[0])
    qs = queries()
    names = argv[1:] or list(qs)
    for n in names:
        if n not in qs:
            print(f"query.py: no query {n!r}; expected one of {', '.join(qs)}", file=sys.stderr)
            return 2
        print(f"-- {n}")
        print(con.sql(qs[n]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
