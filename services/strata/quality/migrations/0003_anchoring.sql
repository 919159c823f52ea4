-- Anchoring: how often an annotator agrees with a shown pre-label that is wrong, on gold
-- (where the truth is known). Honeypots are gold tasks whose pre-label was wrong on purpose.
ALTER TABLE votes ADD COLUMN prelabel_honeypot boolean NOT NULL DEFAULT false;
ALTER TABLE annotators
    ADD COLUMN wrong_prelabels_shown    integer NOT NULL DEFAULT 0,
    ADD COLUMN wrong_prelabels_followed integer NOT NULL DEFAULT 0;
