-- Gold pre-labels imitate the pool's: presence, confidence and agreement follow recent pool
-- tasks (their shown pre-label, and whether it matched the decision), and a share of them
-- are honeypots (deliberately wrong, a plausible confusion).
ALTER TABLE tasks ADD COLUMN honeypot boolean NOT NULL DEFAULT false;
ALTER TABLE units ADD COLUMN decided_value text;
-- The model's second choice: a plausible confusion when its first choice is the answer.
ALTER TABLE prelabels ADD COLUMN runner_up text;
CREATE INDEX tasks_recent_pool ON tasks (project, leased_at DESC) WHERE kind = 'label';
