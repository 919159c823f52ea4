-- A vote's annotator may change it while their task's lease holds (the gateway's
-- AmendLabel): the vote keeps its label id, its value is replaced, `revision` counts
-- the changes applied (a redelivered or older change is ignored).
ALTER TABLE votes ADD COLUMN revision integer NOT NULL DEFAULT 0;
ALTER TABLE votes ADD COLUMN amended_at timestamptz;
