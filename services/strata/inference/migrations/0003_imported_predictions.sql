-- Imported predictions: an outside model's view of items, published as pre-labels.
-- An import names items by their external id (as imported), so inference keeps it
-- from strata.items.imported; items imported before this migration have none and are
-- named by their item id.
ALTER TABLE items ADD COLUMN external_id text;
CREATE INDEX items_external_id ON items (project, external_id) WHERE external_id IS NOT NULL;

-- One prediction per item and outside model (its version name): importing the same
-- file again finds every row here unchanged and publishes nothing.
CREATE TABLE imported_predictions (
    item_id          text             NOT NULL,
    model_version    text             NOT NULL,
    project          text             NOT NULL,
    predicted_class  text             NOT NULL,
    confidence       double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    -- The contract's classes at import time, in order, and a probability for each.
    classes          text[]           NOT NULL,
    probabilities    double precision[] NOT NULL,
    imported_by      text             NOT NULL,
    imported_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (item_id, model_version)
);
CREATE INDEX imported_predictions_project ON imported_predictions (project, model_version);
