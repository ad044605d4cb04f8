-- Queries over the views of runs.sql (docs/fleet.md). Each starts with a "-- name:" line.

-- name: weekly
-- J/token per benchmark per week (median over the week's runs), with the week's energy.
SELECT benchmark,
       CAST(date_trunc('week', started) AS DATE) AS week,
       count(*) AS runs,
       median(j_per_token) * 1e3 AS mj_per_token,
       sum(energy_j) / 1e3 AS energy_kj
FROM runs
GROUP BY ALL
ORDER BY benchmark, week;

-- name: costliest_labels
-- Where the energy went across the fleet: the labels that cost the most, with their J/step.
SELECT benchmark, label,
       count(*) AS runs,
       sum(energy_j) / 1e3 AS energy_kj,
       median(j_per_step) AS j_per_step,
       median(j_per_token) * 1e3 AS mj_per_token,
       mode(verdict) AS usual_bottleneck
FROM run_labels
GROUP BY ALL
ORDER BY energy_kj DESC
LIMIT 20;

-- name: nightly
-- What `wattprof nightly --baseline median:7` computes: each benchmark's latest run against the
-- median of the 7 runs before it, as a change in percent (lower is better).
WITH ranked AS (
    SELECT benchmark, started_at, j_per_token,
           row_number() OVER (PARTITION BY benchmark ORDER BY started_at DESC) AS age
    FROM runs
)
SELECT benchmark,
       any_value(j_per_token) FILTER (WHERE age = 1) AS latest,
       median(j_per_token) FILTER (WHERE age BETWEEN 2 AND 8) AS baseline,
       100 * (latest / baseline - 1) AS change_pct,
       count(*) AS runs
FROM ranked
GROUP BY benchmark
ORDER BY benchmark;
