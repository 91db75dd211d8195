-- 0010_webhook_batch.sql: webhooks that receive their entries in batches.

-- A batched webhook is sent up to the sender's batch of entries per POST (the body
-- {"entries": [...]}, in seq order, signed as one body); the others one entry per POST,
-- as before. A batch is delivered, or fails one attempt, as a whole.
ALTER TABLE webhooks ADD COLUMN batch boolean NOT NULL DEFAULT false;
