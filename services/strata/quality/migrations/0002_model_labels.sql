-- Model labels: how inference routed each prediction (auto-accepted, drawn for a
-- human spot check, or neither), so the report can check auto-accept against humans.
ALTER TABLE predictions ADD COLUMN routed text
    CHECK (routed IS NULL OR routed IN ('auto_accept', 'spot_check'));
ALTER TABLE predictions ADD COLUMN predicted_class text;
CREATE INDEX predictions_routed ON predictions (project, routed) WHERE routed IS NOT NULL;
