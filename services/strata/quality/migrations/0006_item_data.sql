-- What each pool item is, as imported (strata.items.imported): the export's `data` and
-- `external_id`. Gold items are not exported and are not kept here.
CREATE TABLE item_data (
    item_id           text        PRIMARY KEY,
    project           text        NOT NULL,
    external_id       text        NOT NULL DEFAULT '',
    content           bytea       NOT NULL,  -- strata.v1.ItemContent
    metadata          jsonb       NOT NULL DEFAULT '{}',
    canonical_item_id text,
    imported_at       timestamptz
);

-- What a vote's annotator was shown and how long they were active (the export's votes).
ALTER TABLE votes ADD COLUMN active_ms bigint NOT NULL DEFAULT 0;
ALTER TABLE votes ADD COLUMN prelabel_confidence double precision;
ALTER TABLE votes ADD COLUMN prelabel_model text;
