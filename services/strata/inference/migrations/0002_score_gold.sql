-- Gold items are scored and published like pool items: the gateway shows their
-- pre-labels too, so a gold task cannot be told apart by lacking one.
DROP INDEX items_to_score;
CREATE INDEX items_to_score ON items (project, scored_generation);
