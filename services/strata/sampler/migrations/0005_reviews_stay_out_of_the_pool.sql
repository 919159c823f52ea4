-- An item quality withdraws for review (RELABEL) no longer goes back to the pool for
-- the crowd: it waits, without a value, for the reviewer's decision. Nothing reads
-- the flag that put it first in line any more.
ALTER TABLE items DROP COLUMN relabel;
