-- ItemLineage looks an item up in every run's ledger: without this it scanned the
-- whole ledger (its keys start with run_id). ListRuns lists a project's runs newest
-- first. Migrations run in one transaction, so this is not CONCURRENTLY: the ledger
-- takes no writes while the index builds (a run publishing then waits for it).
CREATE INDEX ledger_item ON ledger (item_id);
CREATE INDEX runs_project ON runs (project, requested_at);
