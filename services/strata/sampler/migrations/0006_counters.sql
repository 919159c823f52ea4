-- PoolStats from counters, not from counting a pool of millions: items by state, by
-- duplicate kind, pool and in-flight items by predicted class, pool items by uncertainty
-- (bins of 0.1), and the newest model version. Triggers keep them in the transaction of
-- every change to `items`, whatever statement makes it: a rolled-back change rolls its
-- counts back with it.
--
-- Not one hot row: each statement adds its changes (aggregated over its transition
-- tables: one row per counter it moves, however many items it touched) to a shard that
-- its transaction holds alone (a transaction-scoped advisory lock, claimed at its first
-- counted change), so concurrent hand-outs, imports and consumers never wait on one
-- another for a counter, and never deadlock on one. A read sums the shards.

-- No item changes while the counters are created and filled from the rows.
LOCK TABLE items IN SHARE ROW EXCLUSIVE MODE;

-- An item an expert must decide waits in 'review': out of the pool, out of flight (a
-- lease running out no longer sends it back to the pool to be handed out again), until
-- the decision labels it.
ALTER TABLE items DROP CONSTRAINT items_state_check;
ALTER TABLE items ADD CONSTRAINT items_state_check
    CHECK (state IN ('pool', 'inflight', 'labeled', 'duplicate', 'gold', 'review'));

CREATE TABLE pool_counters (
    project text    NOT NULL,
    kind    text    NOT NULL CHECK (kind IN ('state', 'duplicate', 'class', 'score')),
    value   text    NOT NULL,
    shard   integer NOT NULL,
    n       bigint  NOT NULL,
    PRIMARY KEY (project, kind, value, shard)
);

-- The newest model version that scored any of the project's items: it only grows, so
-- the row is written once per new version, not per prediction batch. Training names
-- versions v1, v2, ... v10: a longer name is newer, then text order (text order alone
-- put v9 after v10).
ALTER TABLE projects ADD COLUMN latest_model_version text;

CREATE FUNCTION newer_version(candidate text, known text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT known IS NULL OR (length(candidate), candidate) > (length(known), known)
$$;

-- Pool items by uncertainty: bin b holds scores in (b/10, (b+1)/10] (0 and below in bin
-- 0); NaN and infinite scores are not binned.
CREATE FUNCTION score_bin(uncertainty double precision) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN uncertainty < 'Infinity'::float8
                THEN greatest(ceil(least(uncertainty, 1e6) * 10) - 1, 0)::bigint END
$$;

-- The counters an item with these values adds to (applied to groups of items, not to
-- each one: a statement's items are grouped by these values first).
CREATE FUNCTION pool_counter_keys(
    state text, duplicate_kind text, predicted_class integer, bin bigint
) RETURNS TABLE (kind text, value text) LANGUAGE sql IMMUTABLE AS $$
    SELECT k.kind, k.value FROM (VALUES
        ('state', state),
        ('duplicate', duplicate_kind),
        ('class', CASE WHEN state IN ('pool', 'inflight') THEN predicted_class::text END),
        ('score', CASE WHEN state = 'pool' THEN bin::text END)
    ) AS k (kind, value)
    WHERE k.value IS NOT NULL
$$;

-- The counter shard this transaction holds alone: the one it claimed already, or the
-- first free one from a place that depends on the connection. With every shard busy (more
-- concurrent writers than shards) it waits for its own, as a single counter row would.
CREATE FUNCTION counter_shard() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    claimed text := current_setting('strata.counter_shard', true);
    space integer := hashtext('strata-counters:' || current_schema());
    shards constant integer := 32;
    start integer := pg_backend_pid() % shards;
    candidate integer;
BEGIN
    IF claimed IS NOT NULL AND claimed <> '' THEN
        RETURN claimed::integer;
    END IF;
    FOR i IN 0 .. shards - 1 LOOP
        candidate := (start + i) % shards;
        IF pg_try_advisory_xact_lock(space, candidate) THEN
            PERFORM set_config('strata.counter_shard', candidate::text, true);
            RETURN candidate;
        END IF;
    END LOOP;
    PERFORM pg_advisory_xact_lock(space, start);
    PERFORM set_config('strata.counter_shard', start::text, true);
    RETURN start;
END
$$;

CREATE FUNCTION count_items() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    my_shard integer := counter_shard();
    newest record;
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
        RETURN NULL;
    END IF;
    -- A project's row is locked only when its newest version changes.
    FOR newest IN
        SELECT DISTINCT ON (r.project) r.project, r.model_version AS version FROM new_items r
        WHERE r.model_version IS NOT NULL
        ORDER BY r.project, length(r.model_version) DESC, r.model_version DESC
    LOOP
        UPDATE projects p SET latest_model_version = newest.version
        WHERE p.project = newest.project AND newer_version(newest.version, p.latest_model_version);
        IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM projects p WHERE p.project = newest.project)
        THEN
            INSERT INTO projects AS p (project, latest_model_version)
            VALUES (newest.project, newest.version)
            ON CONFLICT (project) DO UPDATE SET latest_model_version = EXCLUDED.latest_model_version
            WHERE newer_version(EXCLUDED.latest_model_version, p.latest_model_version);
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE FUNCTION count_items_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM pool_counters;
    UPDATE projects SET latest_model_version = NULL WHERE latest_model_version IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE TRIGGER items_counted_insert AFTER INSERT ON items
    REFERENCING NEW TABLE AS new_items FOR EACH STATEMENT EXECUTE FUNCTION count_items();
CREATE TRIGGER items_counted_update AFTER UPDATE ON items
    REFERENCING OLD TABLE AS old_items NEW TABLE AS new_items
    FOR EACH STATEMENT EXECUTE FUNCTION count_items();
CREATE TRIGGER items_counted_delete AFTER DELETE ON items
    REFERENCING OLD TABLE AS old_items FOR EACH STATEMENT EXECUTE FUNCTION count_items();
CREATE TRIGGER items_counted_truncate AFTER TRUNCATE ON items
    FOR EACH STATEMENT EXECUTE FUNCTION count_items_truncated();

-- The counts of the items already there, in shard 0.
INSERT INTO pool_counters (project, kind, value, shard, n)
SELECT g.project, k.kind, k.value, 0, sum(g.n)
FROM (
    SELECT project, state, duplicate_kind, predicted_class, score_bin(uncertainty) AS bin,
           count(*) AS n
    FROM items GROUP BY 1, 2, 3, 4, 5
) g
CROSS JOIN LATERAL pool_counter_keys(g.state, g.duplicate_kind, g.predicted_class, g.bin) k
GROUP BY 1, 2, 3;

INSERT INTO projects AS p (project, latest_model_version)
SELECT DISTINCT ON (project) project, model_version FROM items
WHERE model_version IS NOT NULL
ORDER BY project, length(model_version) DESC, model_version DESC
ON CONFLICT (project) DO UPDATE SET latest_model_version = EXCLUDED.latest_model_version;
