-- Imports of answers gathered elsewhere find their items by external id, and gold
-- items are kept too so an imported answer on one is scored against its gold answer.
ALTER TABLE item_data ADD COLUMN gold_answer text;
CREATE INDEX item_data_by_external_id ON item_data (project, external_id);
