-- A hand-out reads work in proportion to its batch, never to the pool.
--
-- Ranked candidates come from an index in the ranking's own order (spot checks first,
-- then the most uncertain), which holds scored pool items only: the ranking query
-- reads its LIMIT rows and stops, and a cold pool (nothing scored) is an empty index,
-- not a walk past a million unscored items.
CREATE INDEX items_ranked ON items (project, spot_check DESC, uncertainty DESC NULLS LAST)
    WHERE state = 'pool' AND uncertainty IS NOT NULL;
-- Random candidates (exploration, the cold start's diversity draw, the random
-- strategy): item ids are 128 random bits, so the ids that follow a random point are
-- a random sample, read from this index in its order.
CREATE INDEX items_pool_by_id ON items (project, item_id) WHERE state = 'pool';
-- The old pool index served both queries badly: its order is not the ranking's, and a
-- random sample through it sorted the pool.
DROP INDEX IF EXISTS items_pool;

-- Each model version whose predictions reached the pool, numbered in the order it
-- first did: how many versions a batch's ranking is behind the newest.
CREATE TABLE model_versions (
    project          text        NOT NULL,
    model_version    text        NOT NULL,
    seq              bigint      GENERATED ALWAYS AS IDENTITY,
    first_scored_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, model_version)
);
-- Versions already in the pool: their arrival order was not kept, so they are numbered
-- in name order, shorter names first (training names them v1, v2, ... v10).
INSERT INTO model_versions (project, model_version)
SELECT project, model_version FROM items WHERE model_version IS NOT NULL
GROUP BY project, model_version ORDER BY project, length(model_version), model_version;
