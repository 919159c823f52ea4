-- Bulk events (an import's item announcements) are published after every other event
-- waiting: a training request, a decision or a block is not queued behind a million
-- items. Each lane is read in order from its own partial index.
ALTER TABLE outbox ADD COLUMN bulk boolean NOT NULL DEFAULT false;
CREATE INDEX outbox_unpublished_urgent ON outbox (id) WHERE published_at IS NULL AND NOT bulk;
CREATE INDEX outbox_unpublished_bulk ON outbox (id) WHERE published_at IS NULL AND bulk;
DROP INDEX outbox_unpublished;
