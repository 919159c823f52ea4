-- The quality service's tables: its copy of the contracts, votes, per-item
-- consensus, per-annotator estimates, reviews, and the model signals it audits.

-- Contract versions, copied from strata.contracts (the gateway owns contracts).
CREATE TABLE contracts (
    project    text        NOT NULL,
    version    text        NOT NULL,
    contract   bytea       NOT NULL,
    loaded_at  timestamptz NOT NULL,
    PRIMARY KEY (project, version)
);

-- One row per item that has received a vote.
CREATE TABLE items (
    item_id            text        PRIMARY KEY,
    project            text        NOT NULL,
    ontology_version   text        NOT NULL,
    gold_answer        text,
    -- open: waiting for votes; accepted / expert: decided; review: an expert must decide.
    state              text        NOT NULL DEFAULT 'open'
                       CHECK (state IN ('open', 'accepted', 'review', 'expert')),
    votes              integer     NOT NULL DEFAULT 0,
    requested_overlap  integer     NOT NULL DEFAULT 0,
    value              text,
    consensus_score    double precision,
    method             text,
    classes            text[],
    posterior          double precision[],
    majority_value     text,
    decided_at         timestamptz,
    decided_by         text,
    -- The ConsensusLabel as published when decided: the export's provenance.
    consensus          bytea,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX items_project_state ON items (project, state);

-- Every label, once: the label id is the idempotency key.
CREATE TABLE votes (
    label_id          text        PRIMARY KEY,
    item_id           text        NOT NULL,
    project           text        NOT NULL,
    annotator_id      text        NOT NULL,
    value             text        NOT NULL,
    ontology_version  text        NOT NULL,
    source            text        NOT NULL,
    gold              boolean     NOT NULL DEFAULT false,
    gold_answer       text,
    submitted_at      timestamptz NOT NULL,
    duration_ms       bigint      NOT NULL DEFAULT 0,
    prelabel_value    text,
    received_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX votes_item ON votes (item_id);
CREATE INDEX votes_project_annotator ON votes (project, annotator_id);
CREATE INDEX votes_project_submitted ON votes (project, submitted_at);

-- Per project and annotator: gold record, status, and the Dawid-Skene estimate.
CREATE TABLE annotators (
    project         text             NOT NULL,
    annotator_id    text             NOT NULL,
    gold_answered   integer          NOT NULL DEFAULT 0,
    gold_correct    integer          NOT NULL DEFAULT 0,
    status          text             NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'retrain', 'blocked')),
    status_reason   text,
    -- Row-major [true class][given label], in `classes` order.
    confusion       double precision[],
    classes         text[],
    estimated_at    timestamptz,
    updated_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (project, annotator_id)
);

-- The project-wide estimate the background re-estimation writes.
CREATE TABLE estimates (
    project        text             PRIMARY KEY,
    classes        text[]           NOT NULL,
    class_priors   double precision[] NOT NULL,
    labels_used    bigint           NOT NULL,
    items_used     bigint           NOT NULL,
    iterations     integer          NOT NULL,
    converged      boolean          NOT NULL,
    votes_seen     bigint           NOT NULL,
    estimated_at   timestamptz      NOT NULL DEFAULT now()
);

-- Reviews: an expert must decide (EXPERT) or a suspected error must be relabeled (RELABEL).
CREATE TABLE reviews (
    review_id      bigserial   PRIMARY KEY,
    item_id        text        NOT NULL,
    project        text        NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('expert', 'relabel')),
    detail         text        NOT NULL,
    suspected_label_ids text[] NOT NULL DEFAULT '{}',
    model_version  text,
    opened_at      timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz,
    resolved_by    text,
    value          text,
    note           text
);
-- At most one open review per item.
CREATE UNIQUE INDEX reviews_open_item ON reviews (item_id) WHERE resolved_at IS NULL;
CREATE INDEX reviews_project_open ON reviews (project) WHERE resolved_at IS NULL;

-- The newest model prediction per item: the out-of-sample view label-error detection uses.
CREATE TABLE predictions (
    item_id        text               PRIMARY KEY,
    project        text               NOT NULL,
    model_version  text               NOT NULL,
    classes        text[]             NOT NULL,
    probabilities  double precision[] NOT NULL,
    predicted_at   timestamptz        NOT NULL
);
CREATE INDEX predictions_project ON predictions (project);

-- Memorization flags from training feedback, one per (run, label).
CREATE TABLE memorization_flags (
    run_id         text        NOT NULL,
    label_id       text        NOT NULL,
    item_id        text        NOT NULL,
    project        text        NOT NULL,
    model_version  text        NOT NULL,
    reason         text        NOT NULL,
    score          double precision NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, label_id)
);
