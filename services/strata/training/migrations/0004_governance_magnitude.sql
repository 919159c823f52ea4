-- Governance gives each label a gradient scale per layer group as well as a depth
-- (issue 28): the ledger records it, a run records how it governed (rules or the
-- learned policy, and then the trust curve it applied), and each project keeps the
-- newest trust curve quality fitted on its gold.
ALTER TABLE ledger ADD COLUMN magnitude real NOT NULL DEFAULT 1;
ALTER TABLE runs ADD COLUMN governance_mode smallint NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN trust_curve bytea;
CREATE TABLE trust_curves (
    project text PRIMARY KEY,
    fitted_at timestamptz NOT NULL,
    curve bytea NOT NULL
);
