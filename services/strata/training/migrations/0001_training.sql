-- The training service's tables: its copy of the items and accepted labels it
-- trains on, runs, the model versions they produced, the influence ledger,
-- depth profiles, memorization flags, and the checkpoints TracIn reads.

-- Contract versions, copied from strata.contracts (the gateway owns contracts).
CREATE TABLE contracts (
    project    text        NOT NULL,
    version    text        NOT NULL,
    contract   bytea       NOT NULL,
    loaded_at  timestamptz NOT NULL,
    PRIMARY KEY (project, version)
);

CREATE TABLE items (
    item_id      text        PRIMARY KEY,
    project      text        NOT NULL,
    content      bytea       NOT NULL,
    -- Gold items are held out: the model is measured and calibrated on them.
    gold_answer  text,
    imported_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX items_gold ON items (project) WHERE gold_answer IS NOT NULL;

-- The decided label of each item (the newest decision wins; a relabel request removes it).
CREATE TABLE labels (
    item_id          text        PRIMARY KEY,
    project          text        NOT NULL,
    -- The consensus event's id: one decision, one ledger identity.
    label_id         text        NOT NULL,
    value            text        NOT NULL,
    consensus_score  double precision NOT NULL,
    source           smallint    NOT NULL,
    method           smallint    NOT NULL,
    status           smallint    NOT NULL,
    annotator_ids    text[]      NOT NULL,
    ontology_version text        NOT NULL DEFAULT '',
    decided_at       timestamptz NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX labels_project ON labels (project);

CREATE TABLE runs (
    run_id          uuid        PRIMARY KEY,
    project         text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    family          text        NOT NULL DEFAULT '',
    num_workers     integer     NOT NULL,
    epochs          integer     NOT NULL,
    epoch           integer     NOT NULL DEFAULT 0,
    reason          text        NOT NULL DEFAULT '',
    requested_at    timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    n_labels        integer     NOT NULL DEFAULT 0,
    samples_seen    bigint      NOT NULL DEFAULT 0,
    samples_per_second double precision NOT NULL DEFAULT 0,
    resumed         boolean     NOT NULL DEFAULT false,
    model_version   text,
    metrics         bytea,
    error           text,
    -- Fault injection for tests (see TrainPlan.crash_at_epoch); 0 in production.
    crash_at_epoch  integer     NOT NULL DEFAULT 0
);
-- One run of a project trains at a time; the others wait in request order.
CREATE UNIQUE INDEX runs_one_running ON runs (project) WHERE state = 'running';
CREATE INDEX runs_queued ON runs (requested_at) WHERE state = 'queued';

CREATE TABLE models (
    project        text        NOT NULL,
    version        text        NOT NULL,
    run_id         uuid        NOT NULL REFERENCES runs,
    seq            integer     NOT NULL,
    family         text        NOT NULL,
    classes        text[]      NOT NULL,
    layer_groups   text[]      NOT NULL,
    artifact_uri   text        NOT NULL,
    metrics        bytea       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, version),
    UNIQUE (project, seq)
);

-- Per run, per training label, per layer group: accumulated lr * gradient norm.
CREATE TABLE ledger (
    run_id           uuid        NOT NULL REFERENCES runs,
    label_id         text        NOT NULL,
    item_id          text        NOT NULL,
    layer_group      smallint    NOT NULL,
    influence        double precision NOT NULL,
    influence_depth  smallint    NOT NULL,
    value            text        NOT NULL,
    consensus_score  double precision NOT NULL,
    annotator_ids    text[]      NOT NULL,
    PRIMARY KEY (run_id, label_id, layer_group)
);
CREATE INDEX ledger_annotators ON ledger USING gin (annotator_ids);
CREATE INDEX ledger_value ON ledger (run_id, value);

CREATE TABLE depth_profiles (
    run_id            uuid        NOT NULL REFERENCES runs,
    class_label       text        NOT NULL,
    entropy_by_group  double precision[] NOT NULL,
    PRIMARY KEY (run_id, class_label)
);

CREATE TABLE memorization_flags (
    run_id         uuid        NOT NULL REFERENCES runs,
    label_id       text        NOT NULL,
    item_id        text        NOT NULL,
    value          text        NOT NULL,
    annotator_ids  text[]      NOT NULL,
    reason         text        NOT NULL,
    score          double precision NOT NULL,
    PRIMARY KEY (run_id, label_id)
);

-- Model states saved during a run (artifact URIs), with the learning rate they
-- were trained at: TracIn sums gradient similarity over them.
CREATE TABLE checkpoints (
    run_id        uuid        NOT NULL REFERENCES runs,
    epoch         integer     NOT NULL,
    lr            double precision NOT NULL,
    artifact_uri  text        NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
