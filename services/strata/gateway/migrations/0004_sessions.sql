-- Browser sessions: the web service trades a person's token, or a one-time sign-in link,
-- for a short-lived session token it keeps in an HttpOnly cookie.
ALTER TABLE tokens DROP CONSTRAINT IF EXISTS tokens_kind_check;
ALTER TABLE tokens ADD CONSTRAINT tokens_kind_check
    CHECK (kind IN ('issued', 'bootstrap', 'renewed', 'session'));

CREATE TABLE sign_in_links (
    code_hash    text        PRIMARY KEY,
    annotator_id text        NOT NULL REFERENCES annotators (annotator_id),
    project      text        NOT NULL,
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz
);
CREATE INDEX sign_in_links_by_annotator ON sign_in_links (annotator_id);

-- Active time on a task (page focused, the person not idle), as the client measured it.
ALTER TABLE labels ADD COLUMN active_ms bigint NOT NULL DEFAULT 0;
