-- wattprof runs as two DuckDB views, read where the runs lie (docs/fleet.md).
-- Set the glob to your runs' directory (a local path, or s3://bucket/prefix/ with DuckDB's httpfs).
-- Each finished run has a summary.json (written when it is finalised, or by `wattprof nightly`).
CREATE OR REPLACE VIEW runs AS
SELECT *, to_timestamp(started_at) AS started
FROM read_json('${RUNS}/**/summary.json',
    format = 'auto',
    filename = true,
    hive_partitioning = false,   -- the summary carries benchmark and date itself
    columns = {
        path: 'VARCHAR', id: 'VARCHAR', name: 'VARCHAR', benchmark: 'VARCHAR',
        tags: 'MAP(VARCHAR, VARCHAR)', status: 'VARCHAR',
        started_at: 'DOUBLE', ended_at: 'DOUBLE', duration_s: 'DOUBLE',
        energy_j: 'DOUBLE', energy_source: 'VARCHAR', boundary: 'VARCHAR', estimated: 'BOOLEAN',
        tokens: 'DOUBLE', j_per_token: 'DOUBLE', mean_power_w: 'DOUBLE', steps: 'BIGINT',
        labels: 'STRUCT(label VARCHAR, energy_j DOUBLE, j_per_token DOUBLE, tokens DOUBLE, duration_s DOUBLE,
                        steps BIGINT, mean_power_w DOUBLE, j_per_step DOUBLE, verdict VARCHAR)[]',
        j_per_task: 'DOUBLE', version: 'INTEGER'
    })
WHERE status <> 'unfinished';

-- One row per run and label.
CREATE OR REPLACE VIEW run_labels AS
SELECT r.benchmark, r.path, r.started_at, r.started, l.*
FROM runs AS r, unnest(r.labels) AS u(l);
