-- Images are near-deduplicated by a small mean-centred grey thumbnail (cosine over
-- random-projection buckets); kept so every replica can rebuild its index.
ALTER TABLE items ADD COLUMN thumbnail real[];
