-- Imports into one project are serialised (an advisory lock) and numbered, so
-- every replica's near-duplicate index can catch up on exactly what others stored.
CREATE SEQUENCE import_seq;
ALTER TABLE items ADD COLUMN import_seq bigint NOT NULL DEFAULT 0;
CREATE INDEX items_index_material ON items (project, import_seq)
    WHERE canonical_item_id IS NULL AND state <> 'gold';
