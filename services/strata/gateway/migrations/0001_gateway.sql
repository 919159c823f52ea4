-- The annotation gateway's state: contracts, people, work, leases and raw labels.

-- Versioned labeling contracts; a version is immutable once loaded.
CREATE TABLE contracts (
    project   text        NOT NULL,
    version   text        NOT NULL,
    document  text        NOT NULL,
    contract  bytea       NOT NULL,  -- strata.v1.LabelingContract
    digest    text        NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    loaded_by text        NOT NULL,
    PRIMARY KEY (project, version)
);
CREATE INDEX contracts_latest ON contracts (project, loaded_at DESC);

CREATE TABLE annotators (
    annotator_id      text        PRIMARY KEY,
    display_name      text        NOT NULL DEFAULT '',
    role              text        NOT NULL CHECK (role IN ('annotator', 'reviewer', 'admin')),
    status            text        NOT NULL DEFAULT 'active'
                                  CHECK (status IN ('active', 'retrain', 'blocked')),
    status_reason     text        NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now(),
    status_changed_at timestamptz NOT NULL DEFAULT now()
);

-- Only a hash of each bearer token is kept.
CREATE TABLE tokens (
    token_hash   text        PRIMARY KEY,
    annotator_id text        NOT NULL REFERENCES annotators (annotator_id),
    issued_at    timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX tokens_by_annotator ON tokens (annotator_id);

CREATE TABLE audit_log (
    id     bigserial   PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now(),
    actor  text        NOT NULL,
    action text        NOT NULL,
    target text        NOT NULL DEFAULT '',
    detail jsonb       NOT NULL DEFAULT '{}'
);

-- Items the gateway can show: pool items handed out by the sampler, and gold items.
CREATE TABLE items (
    item_id     text        PRIMARY KEY,
    project     text        NOT NULL,
    content     bytea       NOT NULL,  -- strata.v1.ItemContent
    gold_answer text,                  -- set only for gold items
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A unit of work: label an item (kind label), answer a gold item (kind gold,
-- unlimited, once per annotator) or review an item (kind review, reviewers only).
-- `seq` keeps the sampler's ranking: units are handed out in the order received.
CREATE TABLE units (
    unit_id     bigserial   PRIMARY KEY,
    seq         bigserial   NOT NULL,
    item_id     text        NOT NULL REFERENCES items (item_id),
    project     text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('label', 'gold', 'review')),
    state       text        NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'done', 'closed')),
    target      integer     NOT NULL,  -- distinct annotators wanted
    slots_open  integer     NOT NULL,  -- target minus live (leased or labeled) tasks
    labels      integer     NOT NULL DEFAULT 0,
    routing     bytea       NOT NULL,  -- strata.v1.RoutingMetadata as the sampler ranked it
    review_kind integer     NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX units_one_label_unit ON units (item_id) WHERE kind IN ('label', 'gold');
CREATE UNIQUE INDEX units_one_open_review ON units (item_id) WHERE kind = 'review' AND state = 'open';
CREATE INDEX units_ready ON units (project, kind, seq) WHERE slots_open > 0 AND state = 'open';
CREATE INDEX units_gold ON units (project) WHERE kind = 'gold';

CREATE TABLE tasks (
    task_id          uuid        PRIMARY KEY,
    unit_id          bigint      NOT NULL REFERENCES units (unit_id),
    item_id          text        NOT NULL,
    project          text        NOT NULL,
    annotator_id     text        NOT NULL REFERENCES annotators (annotator_id),
    kind             text        NOT NULL,
    state            text        NOT NULL DEFAULT 'leased'
                                 CHECK (state IN ('leased', 'labeled', 'skipped', 'expired', 'released')),
    ontology_version text        NOT NULL,
    leased_at        timestamptz NOT NULL DEFAULT now(),
    lease_expires_at timestamptz NOT NULL,
    shown_prelabel   bytea,      -- strata.v1.PreLabel, when one was shown
    finished_at      timestamptz,
    skip_reason      text,
    -- Nobody ever gets the same item twice.
    UNIQUE (item_id, annotator_id)
);
CREATE INDEX tasks_leased ON tasks (lease_expires_at) WHERE state = 'leased';
CREATE INDEX tasks_by_annotator ON tasks (annotator_id, state);

CREATE TABLE labels (
    label_id         uuid        PRIMARY KEY,
    task_id          uuid        NOT NULL UNIQUE REFERENCES tasks (task_id),
    item_id          text        NOT NULL,
    project          text        NOT NULL,
    annotator_id     text        NOT NULL,
    client_label_id  text        NOT NULL,
    value            text        NOT NULL,
    ontology_version text        NOT NULL,
    duration_ms      bigint      NOT NULL,
    source           integer     NOT NULL,
    gold             boolean     NOT NULL,
    submitted_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (annotator_id, client_label_id)
);
CREATE INDEX labels_by_project ON labels (project, submitted_at);

-- The newest prediction per item, shown as a pre-label.
CREATE TABLE prelabels (
    item_id       text             PRIMARY KEY,
    value         text             NOT NULL,
    confidence    double precision NOT NULL,
    model_version text             NOT NULL,
    calibrated    boolean          NOT NULL,
    predicted_at  timestamptz      NOT NULL
);
