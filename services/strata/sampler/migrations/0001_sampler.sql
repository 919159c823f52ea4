-- The sampler's tables: the pool (every imported item and its state), the
-- model's view of each item, and per-project counters.

-- Contract versions, copied from strata.contracts (the gateway owns contracts).
CREATE TABLE contracts (
    project    text        NOT NULL,
    version    text        NOT NULL,
    contract   bytea       NOT NULL,
    loaded_at  timestamptz NOT NULL,
    PRIMARY KEY (project, version)
);

CREATE TABLE items (
    item_id            text        PRIMARY KEY,
    project            text        NOT NULL,
    external_id        text        NOT NULL DEFAULT '',
    content            bytea       NOT NULL,
    metadata           jsonb       NOT NULL DEFAULT '{}',
    content_hash       text        NOT NULL,
    -- pool: waiting; inflight: handed out; labeled: consensus arrived;
    -- duplicate: linked to its canonical item, never labeled; gold: the gateway's gold set.
    state              text        NOT NULL DEFAULT 'pool'
                       CHECK (state IN ('pool', 'inflight', 'labeled', 'duplicate', 'gold')),
    canonical_item_id  text,
    duplicate_kind     text CHECK (duplicate_kind IN ('exact', 'near')),
    similarity         double precision,
    gold_answer        text,
    -- LSH material, so a restarted sampler rebuilds its near-duplicate index.
    signature          bytea,
    vector             real[],
    -- The newest prediction.
    model_version      text,
    probabilities      real[],
    embedding          real[],
    predicted_class    integer,
    uncertainty        double precision,
    -- Hand-out and outcome.
    leased_by          text,
    lease_until        timestamptz,
    relabel            boolean     NOT NULL DEFAULT false,
    consensus_value    text,
    propagated_from    text,
    imported_at        timestamptz NOT NULL DEFAULT now(),
    labeled_at         timestamptz
);
-- One canonical item per content; exact duplicates point at it.
CREATE UNIQUE INDEX items_project_hash ON items (project, content_hash)
    WHERE canonical_item_id IS NULL;
CREATE INDEX items_pool ON items (project, uncertainty DESC NULLS LAST) WHERE state = 'pool';
CREATE INDEX items_canonical ON items (canonical_item_id) WHERE canonical_item_id IS NOT NULL;
CREATE INDEX items_lease ON items (lease_until) WHERE state = 'inflight';

-- Per project: consensus labels since the last training request, and the
-- classes training feedback marks as confused.
CREATE TABLE projects (
    project                   text        PRIMARY KEY,
    consensus_since_training  integer     NOT NULL DEFAULT 0,
    consensus_total           integer     NOT NULL DEFAULT 0,
    trainings_requested       integer     NOT NULL DEFAULT 0,
    confused_classes          jsonb       NOT NULL DEFAULT '{}',
    feedback_model_version    text,
    updated_at                timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE batches (
    batch_id    uuid        PRIMARY KEY,
    project     text        NOT NULL,
    requester   text        NOT NULL,
    items       integer     NOT NULL,
    cold_start  boolean     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
