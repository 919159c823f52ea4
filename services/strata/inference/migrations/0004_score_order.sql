-- Scoring claims the next items in (scored_generation, item_id) order. Without item_id in
-- the index, Postgres read and sorted every unscored item of the project for each claim:
-- 1.4 s a claim of 2,048 at a million items, against 20 ms in index order.
DROP INDEX items_to_score;
CREATE INDEX items_to_score ON items (project, scored_generation, item_id);
