-- One rule for "the newest model version": the order in which versions' predictions
-- first reached the pool (`model_versions`, migration 0007), for PoolStats as for a
-- batch's staleness. The name-order guess kept in `projects.latest_model_version` goes,
-- and with it the trigger's per-statement work to keep it.

CREATE OR REPLACE FUNCTION count_items() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    my_shard integer := counter_shard();
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO pool_counters AS c (project, kind, value, shard, n)
        SELECT g.project, k.kind, k.value, my_shard, sum(g.n)
        FROM (
            SELECT r.project, r.state, r.duplicate_kind, r.predicted_class,
                   score_bin(r.uncertainty) AS bin, count(*) AS n
            FROM new_items r GROUP BY 1, 2, 3, 4, 5
        ) g
        CROSS JOIN LATERAL pool_counter_keys(g.state, g.duplicate_kind, g.predicted_class, g.bin) k
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (project, kind, value, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO pool_counters AS c (project, kind, value, shard, n)
        SELECT g.project, k.kind, k.value, my_shard, sum(g.n)
        FROM (
            SELECT x.project, x.state, x.duplicate_kind, x.predicted_class, x.bin,
                   sum(x.delta) AS n
            FROM (
                SELECT r.project, r.state, r.duplicate_kind, r.predicted_class,
                       score_bin(r.uncertainty) AS bin, -1 AS delta
                FROM old_items r
                UNION ALL
                SELECT r.project, r.state, r.duplicate_kind, r.predicted_class,
                       score_bin(r.uncertainty), 1
                FROM new_items r
            ) x
            GROUP BY 1, 2, 3, 4, 5
        ) g
        CROSS JOIN LATERAL pool_counter_keys(g.state, g.duplicate_kind, g.predicted_class, g.bin) k
        GROUP BY 1, 2, 3 HAVING sum(g.n) <> 0 ORDER BY 1, 2, 3
        ON CONFLICT (project, kind, value, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSE
        INSERT INTO pool_counters AS c (project, kind, value, shard, n)
        SELECT g.project, k.kind, k.value, my_shard, -sum(g.n)
        FROM (
            SELECT r.project, r.state, r.duplicate_kind, r.predicted_class,
                   score_bin(r.uncertainty) AS bin, count(*) AS n
            FROM old_items r GROUP BY 1, 2, 3, 4, 5
        ) g
        CROSS JOIN LATERAL pool_counter_keys(g.state, g.duplicate_kind, g.predicted_class, g.bin) k
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (project, kind, value, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION count_items_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM pool_counters;
    RETURN NULL;
END
$$;

ALTER TABLE projects DROP COLUMN latest_model_version;
DROP FUNCTION newer_version(text, text);
