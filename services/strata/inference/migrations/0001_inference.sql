-- The inference service's tables: its copy of the pool (to score it), the models
-- published to it, and which version serves each project.

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
    content            bytea       NOT NULL,
    -- Gold items are scored for calibration and auto-accept precision, never published.
    gold_answer        text,
    imported_at        timestamptz NOT NULL DEFAULT now(),
    -- The serving generation that last scored it (0: never), and with which version.
    scored_generation  bigint      NOT NULL DEFAULT 0,
    scored_version     text,
    -- Why the serving model could not score it (wrong modality or shape), if so.
    score_error        text
);
CREATE INDEX items_to_score ON items (project, scored_generation) WHERE gold_answer IS NULL;
CREATE INDEX items_gold ON items (project) WHERE gold_answer IS NOT NULL;

CREATE TABLE models (
    project            text        NOT NULL,
    version            text        NOT NULL,
    family             text        NOT NULL DEFAULT '',
    artifact_uri       text        NOT NULL,
    classes            text[]      NOT NULL,
    run_id             text        NOT NULL DEFAULT '',
    metrics            bytea,
    -- loaded: validated and calibrated; failed: could not be served (see error).
    status             text        NOT NULL CHECK (status IN ('loaded', 'failed')),
    error              text,
    calibrated         boolean     NOT NULL DEFAULT false,
    temperature        double precision NOT NULL DEFAULT 1.0,
    ece_before         double precision,
    ece_after          double precision,
    n_gold             integer     NOT NULL DEFAULT 0,
    calibration_note   text        NOT NULL DEFAULT '',
    -- Calibrated confidence and correctness of each gold prediction: auto-accept's
    -- precision at any threshold is measured from these.
    gold_confidence    double precision[] NOT NULL DEFAULT '{}',
    gold_correct       boolean[]   NOT NULL DEFAULT '{}',
    published_at       timestamptz,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, version)
);

-- The version each project is served by; generation grows with every change, so
-- scoring can tell which items the serving version has not seen yet.
CREATE TABLE serving (
    project            text        PRIMARY KEY,
    version            text        NOT NULL,
    previous_version   text,
    generation         bigint      NOT NULL,
    auto_accepted      bigint      NOT NULL DEFAULT 0,
    spot_checked       bigint      NOT NULL DEFAULT 0,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE SEQUENCE serving_generation;
