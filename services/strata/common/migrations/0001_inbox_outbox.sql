-- The service kit's tables, created in every service's own schema.

-- Events this service must publish: written in the same transaction as the
-- state change, published at least once by the relay.
CREATE TABLE outbox (
    id                    bigserial PRIMARY KEY,
    event_id              uuid        NOT NULL UNIQUE,
    topic                 text        NOT NULL,
    key                   bytea,
    event_type            text        NOT NULL,
    schema_name           text        NOT NULL,
    trace_id              text        NOT NULL,
    payload               bytea       NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    published_at          timestamptz,
    -- The broker incarnation it was published to; a memory-only broker that
    -- restarts gets a new one, and everything still retained is published again.
    published_incarnation text,
    publish_count         integer     NOT NULL DEFAULT 0
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Events this service has consumed: one row per (group, event id) makes every
-- handler idempotent, committed in the handler's own transaction.
CREATE TABLE inbox (
    consumer_group text        NOT NULL,
    event_id       text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    "offset"       bigint      NOT NULL,
    outcome        text        NOT NULL CHECK (outcome IN ('processed', 'deadlettered')),
    reason         text,
    processed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);
