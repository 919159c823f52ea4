-- QueueStats without counting a project's units, tasks and labels. What grows with the
-- project (label items labelled, in review, completed; gold and review units; labels in
-- all and per minute) is kept in counters; what the queue holds right now (ready slots,
-- queued items, live leases) is read from partial indexes that hold only that, bounded
-- by the queue's depth and the people at work, not by the project's size.
--
-- Triggers keep the counters in the transaction of every change, whatever statement
-- makes it: a rolled-back change rolls its counts back with it. Not one hot row: each
-- statement adds its changes (aggregated over its transition tables: one row per
-- counter it moves) to a shard that its transaction holds alone (a transaction-scoped
-- advisory lock, claimed at its first counted change), so concurrent NextTask and
-- SubmitLabel calls and consumers never wait on one another for a counter, and never
-- deadlock on one. A read sums the shards. A lease moves no counter at all.

-- Nothing changes while the counters are created and filled from the rows.
LOCK TABLE units, labels IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE queue_counters (
    project text    NOT NULL,
    kind    text    NOT NULL CHECK (kind IN ('unit', 'labels')),
    value   text    NOT NULL,
    shard   integer NOT NULL,
    n       bigint  NOT NULL,
    PRIMARY KEY (project, kind, value, shard)
);

-- Labels per minute of submission (UTC), for "labels in the last hour".
CREATE TABLE label_minutes (
    project text        NOT NULL,
    minute  timestamptz NOT NULL,
    shard   integer     NOT NULL,
    n       bigint      NOT NULL,
    PRIMARY KEY (project, minute, shard)
);

-- Where a unit is. A label unit (one per item the sampler handed out): waiting (votes
-- still wanted: its slots are open or leased), labelled (every vote wanted is in:
-- waiting for quality's consensus), review (quality sent the item to an expert: waiting
-- for the decision), completed (decided). Gold units are 'gold'; review units
-- 'review_open', 'review_done' or 'review_closed'. A lease (a slot fewer) moves none.
CREATE FUNCTION unit_bucket(kind text, state text, labels integer, target integer)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN kind = 'gold' THEN 'gold'
        WHEN kind = 'review' THEN 'review_' || state
        WHEN state = 'done' THEN 'completed'
        WHEN state = 'closed' THEN 'review'
        WHEN labels >= target THEN 'labelled'
        ELSE 'waiting'
    END
$$;

-- The counter shard this transaction holds alone: the one it claimed already, or the
-- first free one from a place that depends on the connection. With every shard busy (more
-- concurrent writers than shards) it waits for its own, as a single counter row would.
CREATE FUNCTION counter_shard() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    claimed text := current_setting('strata.counter_shard', true);
    space integer := hashtext('strata-counters:' || current_schema());
    shards constant integer := 64;
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

-- A trigger with transition tables fires on one kind of event and names only the tables
-- it has (no OLD TABLE on INSERT, no NEW TABLE on DELETE), hence a statement for each.
-- A shard is claimed only when a counter moves.
CREATE FUNCTION count_units() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO queue_counters AS c (project, kind, value, shard, n)
        SELECT r.project, 'unit', unit_bucket(r.kind, r.state, r.labels, r.target),
               counter_shard(), count(*)
        FROM new_units r GROUP BY 1, 3 ORDER BY 1, 3
        ON CONFLICT (project, kind, value, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO queue_counters AS c (project, kind, value, shard, n)
        SELECT d.project, 'unit', d.bucket, counter_shard(), sum(d.n)
        FROM (
            SELECT r.project, unit_bucket(r.kind, r.state, r.labels, r.target) AS bucket,
                   1 AS n
            FROM new_units r
            UNION ALL
            SELECT r.project, unit_bucket(r.kind, r.state, r.labels, r.target), -1
            FROM old_units r
        ) d
        GROUP BY 1, 3 HAVING sum(d.n) <> 0 ORDER BY 1, 3
        ON CONFLICT (project, kind, value, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSE
        INSERT INTO queue_counters AS c (project, kind, value, shard, n)
        SELECT r.project, 'unit', unit_bucket(r.kind, r.state, r.labels, r.target),
               counter_shard(), -count(*)
        FROM old_units r GROUP BY 1, 3 ORDER BY 1, 3
        ON CONFLICT (project, kind, value, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END
$$;

-- Labels in all, and per minute of submission; minutes past the last two hours are never
-- read again, and a shard's go when it writes its first labels of a minute.
CREATE FUNCTION count_labels() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    my_shard integer := counter_shard();
    new_minute boolean;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO queue_counters AS c (project, kind, value, shard, n)
        SELECT r.project, 'labels', 'all', my_shard, count(*)
        FROM new_labels r GROUP BY 1 ORDER BY 1
        ON CONFLICT (project, kind, value, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
        WITH written AS (
            INSERT INTO label_minutes AS m (project, minute, shard, n)
            SELECT r.project, date_trunc('minute', r.submitted_at, 'UTC'), my_shard, count(*)
            FROM new_labels r GROUP BY 1, 2 ORDER BY 1, 2
            ON CONFLICT (project, minute, shard) DO UPDATE SET n = m.n + EXCLUDED.n
            RETURNING m.xmax = 0 AS inserted
        )
        SELECT bool_or(inserted) INTO new_minute FROM written;
        IF new_minute THEN
            DELETE FROM label_minutes m
            WHERE m.shard = my_shard AND m.minute < now() - interval '2 hours'
              AND m.project IN (SELECT r.project FROM new_labels r);
        END IF;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO queue_counters AS c (project, kind, value, shard, n)
        SELECT d.project, 'labels', 'all', my_shard, sum(d.n)
        FROM (
            SELECT r.project, 1 AS n FROM new_labels r
            UNION ALL
            SELECT r.project, -1 FROM old_labels r
        ) d
        GROUP BY 1 HAVING sum(d.n) <> 0 ORDER BY 1
        ON CONFLICT (project, kind, value, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
        INSERT INTO label_minutes AS m (project, minute, shard, n)
        SELECT d.project, d.minute, my_shard, sum(d.n)
        FROM (
            SELECT r.project, date_trunc('minute', r.submitted_at, 'UTC') AS minute, 1 AS n
            FROM new_labels r
            UNION ALL
            SELECT r.project, date_trunc('minute', r.submitted_at, 'UTC'), -1 FROM old_labels r
        ) d
        GROUP BY 1, 2 HAVING sum(d.n) <> 0 ORDER BY 1, 2
        ON CONFLICT (project, minute, shard) DO UPDATE SET n = m.n + EXCLUDED.n;
    ELSE
        INSERT INTO queue_counters AS c (project, kind, value, shard, n)
        SELECT r.project, 'labels', 'all', my_shard, -count(*)
        FROM old_labels r GROUP BY 1 ORDER BY 1
        ON CONFLICT (project, kind, value, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
        INSERT INTO label_minutes AS m (project, minute, shard, n)
        SELECT r.project, date_trunc('minute', r.submitted_at, 'UTC'), my_shard, -count(*)
        FROM old_labels r GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (project, minute, shard) DO UPDATE SET n = m.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION count_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'units' THEN
        DELETE FROM queue_counters WHERE kind = 'unit';
    ELSE
        DELETE FROM queue_counters WHERE kind = 'labels';
        DELETE FROM label_minutes;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER units_counted_insert AFTER INSERT ON units
    REFERENCING NEW TABLE AS new_units FOR EACH STATEMENT EXECUTE FUNCTION count_units();
CREATE TRIGGER units_counted_update AFTER UPDATE ON units
    REFERENCING OLD TABLE AS old_units NEW TABLE AS new_units
    FOR EACH STATEMENT EXECUTE FUNCTION count_units();
CREATE TRIGGER units_counted_delete AFTER DELETE ON units
    REFERENCING OLD TABLE AS old_units FOR EACH STATEMENT EXECUTE FUNCTION count_units();
CREATE TRIGGER units_counted_truncate AFTER TRUNCATE ON units
    FOR EACH STATEMENT EXECUTE FUNCTION count_truncated();

CREATE TRIGGER labels_counted_insert AFTER INSERT ON labels
    REFERENCING NEW TABLE AS new_labels FOR EACH STATEMENT EXECUTE FUNCTION count_labels();
CREATE TRIGGER labels_counted_update AFTER UPDATE ON labels
    REFERENCING OLD TABLE AS old_labels NEW TABLE AS new_labels
    FOR EACH STATEMENT EXECUTE FUNCTION count_labels();
CREATE TRIGGER labels_counted_delete AFTER DELETE ON labels
    REFERENCING OLD TABLE AS old_labels FOR EACH STATEMENT EXECUTE FUNCTION count_labels();
CREATE TRIGGER labels_counted_truncate AFTER TRUNCATE ON labels
    FOR EACH STATEMENT EXECUTE FUNCTION count_truncated();

-- The counts of the rows already there, in shard 0.
INSERT INTO queue_counters (project, kind, value, shard, n)
SELECT project, 'unit', unit_bucket(kind, state, labels, target), 0, count(*)
FROM units GROUP BY 1, 3;
INSERT INTO queue_counters (project, kind, value, shard, n)
SELECT project, 'labels', 'all', 0, count(*) FROM labels GROUP BY 1;
INSERT INTO label_minutes (project, minute, shard, n)
SELECT project, date_trunc('minute', submitted_at, 'UTC'), 0, count(*) FROM labels
WHERE submitted_at > now() - interval '2 hours' GROUP BY 1, 2;

-- The live leases of a project (how many, the oldest), without reading its other tasks.
CREATE INDEX tasks_leased_by_project ON tasks (project, leased_at) WHERE state = 'leased';
