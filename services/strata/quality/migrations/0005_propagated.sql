-- Duplicates the sampler labelled from their canonical item (method 'propagated'): they
-- carry its decision whole, and belong in the dataset (exports) marked as copies.
ALTER TABLE items ADD COLUMN propagated_from text;
