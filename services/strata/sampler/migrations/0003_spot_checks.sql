-- Auto-accept's spot checks: predictions inference drew for a human look even
-- though the model was confident enough to label them. They go out first.
ALTER TABLE items ADD COLUMN spot_check boolean NOT NULL DEFAULT false;
