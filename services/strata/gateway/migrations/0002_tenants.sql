-- Projects are tenants: a person's role and status are kept per project; admin stays global.

CREATE TABLE memberships (
    project           text        NOT NULL,
    annotator_id      text        NOT NULL REFERENCES annotators (annotator_id),
    role              text        NOT NULL CHECK (role IN ('annotator', 'reviewer', 'manager')),
    status            text        NOT NULL DEFAULT 'active'
                                  CHECK (status IN ('active', 'retrain', 'blocked')),
    status_reason     text        NOT NULL DEFAULT '',
    status_changed_at timestamptz NOT NULL DEFAULT now(),
    added_at          timestamptz NOT NULL DEFAULT now(),
    added_by          text        NOT NULL DEFAULT '',
    PRIMARY KEY (project, annotator_id)
);
CREATE INDEX memberships_by_person ON memberships (annotator_id);

-- Whoever worked on a project before memberships existed keeps working there, with the
-- role and the status they had.
INSERT INTO memberships (project, annotator_id, role, status, status_reason, added_by)
SELECT DISTINCT t.project, a.annotator_id, a.role, a.status, a.status_reason, 'migration'
FROM tasks t JOIN annotators a USING (annotator_id)
WHERE a.role IN ('annotator', 'reviewer');

-- The global role is now only admin or not; status lives on the membership.
ALTER TABLE annotators DROP CONSTRAINT annotators_role_check;
UPDATE annotators SET role = 'person' WHERE role <> 'admin';
ALTER TABLE annotators ADD CONSTRAINT annotators_role_check CHECK (role IN ('admin', 'person'));
ALTER TABLE annotators DROP COLUMN status, DROP COLUMN status_reason,
    DROP COLUMN status_changed_at;

-- A bootstrap token (STRATA_GATEWAY_ADMIN_TOKEN) is replaced, never added to, when the
-- setting changes; a renewed token revokes the one it replaced.
ALTER TABLE tokens ADD COLUMN kind text NOT NULL DEFAULT 'issued'
    CHECK (kind IN ('issued', 'bootstrap', 'renewed'));
UPDATE tokens t SET kind = 'bootstrap' FROM annotators a
WHERE a.annotator_id = t.annotator_id AND a.display_name = 'bootstrap admin';
-- A token a manager issued reaches only the projects they manage: NULL is unscoped (an
-- admin issued it), otherwise the projects the token may act in.
ALTER TABLE tokens ADD COLUMN scope text[];

-- The audit table: refusals and administrative or decisive actions of every service
-- (the others' arrive on strata.audit, idempotent on their event id).
ALTER TABLE audit_log
    ADD COLUMN event_id   text UNIQUE,
    ADD COLUMN service    text NOT NULL DEFAULT 'gateway',
    ADD COLUMN actor_kind text NOT NULL DEFAULT '',
    ADD COLUMN source     text NOT NULL DEFAULT '',
    ADD COLUMN rpc        text NOT NULL DEFAULT '',
    ADD COLUMN project    text NOT NULL DEFAULT '',
    ADD COLUMN outcome    text NOT NULL DEFAULT 'done' CHECK (outcome IN ('done', 'refused')),
    ADD COLUMN code       text NOT NULL DEFAULT '',
    ADD COLUMN reason     text NOT NULL DEFAULT '';
CREATE INDEX audit_log_newest ON audit_log (id DESC);
CREATE INDEX audit_log_by_project ON audit_log (project, id DESC);
CREATE INDEX audit_log_by_actor ON audit_log (actor, id DESC);
