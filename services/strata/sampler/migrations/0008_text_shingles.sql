-- A text's near-duplicates are confirmed by the exact Jaccard of the shingle sets (the
-- MinHash signature only finds candidates): each canonical text keeps its distinct
-- 32-bit word 3-gram hashes, sorted, so every replica can rebuild its index. Rows stored
-- before have none; the index derives them from the content.
ALTER TABLE items ADD COLUMN shingles bytea;
