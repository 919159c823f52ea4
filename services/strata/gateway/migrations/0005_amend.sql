-- An answer can be changed while its task's lease holds (AmendLabel): the label keeps
-- its id, its value is replaced, and `revision` counts the changes.
ALTER TABLE labels ADD COLUMN revision integer NOT NULL DEFAULT 0;
ALTER TABLE labels ADD COLUMN amended_at timestamptz;
