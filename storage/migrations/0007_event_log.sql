-- 0007_event_log.sql: the event log as an ordered outbox, its relay's cursors, webhooks.

-- Each event's log is numbered 1, 2, 3, ... in commit order, with no gaps: a trigger takes
-- the next number from the event's head row, whose row lock is held until the writing
-- transaction ends. A later writer of the same event waits for it, so number n+1 is never
-- visible before n; a transaction that rolls back rolls its numbers back with it. (The
-- bigserial id is not commit order: ids are drawn before commit, in any order.)
CREATE TABLE event_log_heads (
    event_id  text PRIMARY KEY,
    last_seq  bigint NOT NULL
);

-- How far the relay has published each event's log. Relays lock a cursor row with
-- FOR UPDATE SKIP LOCKED for the length of a batch, so two never interleave one event.
-- Its own table: writers never wait for a relay, nor a relay for writers.
CREATE TABLE event_log_cursors (
    event_id       text PRIMARY KEY,
    published_seq  bigint NOT NULL DEFAULT 0
);

ALTER TABLE event_log ADD COLUMN seq bigint;
ALTER TABLE event_log ADD COLUMN version integer NOT NULL DEFAULT 1;
-- Who made the change when a person did (the admin: request id, client address).
ALTER TABLE event_log ADD COLUMN actor jsonb;

-- Rows written before this migration are numbered in id order.
UPDATE event_log l SET seq = n.seq
FROM (SELECT id, row_number() OVER (PARTITION BY event_id ORDER BY id) AS seq FROM event_log) n
WHERE l.id = n.id;
INSERT INTO event_log_heads (event_id, last_seq)
SELECT event_id, max(seq) FROM event_log GROUP BY event_id;
-- What was written before had no relay: it counts as published.
INSERT INTO event_log_cursors (event_id, published_seq)
SELECT event_id, last_seq FROM event_log_heads;
UPDATE event_log SET published_at = created_at WHERE published_at IS NULL;

ALTER TABLE event_log ALTER COLUMN seq SET NOT NULL;
CREATE UNIQUE INDEX event_log_event_seq ON event_log (event_id, seq);
DROP INDEX event_log_unpublished;

CREATE FUNCTION event_log_number() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_log_heads AS h (event_id, last_seq) VALUES (NEW.event_id, 1)
    ON CONFLICT (event_id) DO UPDATE SET last_seq = h.last_seq + 1
    RETURNING last_seq INTO NEW.seq;
    IF NEW.seq = 1 THEN
        INSERT INTO event_log_cursors (event_id) VALUES (NEW.event_id) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER event_log_number BEFORE INSERT ON event_log
FOR EACH ROW EXECUTE FUNCTION event_log_number();

-- Integrators' URLs per event. The secret signs deliveries (it must be kept to sign them;
-- it is shown once, when registered). An endpoint is 'dead' once a delivery failed too
-- often: its queue waits, in order, until the admin redelivers.
CREATE TABLE webhooks (
    id          text PRIMARY KEY,
    event_id    text NOT NULL REFERENCES events (id),
    url         text NOT NULL,
    secret      text NOT NULL,
    state       text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'dead', 'removed')),
    -- The seq of its own webhook_registered entry: deliveries start there.
    from_seq    bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    removed_at  timestamptz
);
CREATE INDEX webhooks_event ON webhooks (event_id) WHERE state <> 'removed';

-- One row per (endpoint, log entry) to deliver, queued by the relay in the transaction
-- that marks the entry published; sent in seq order per endpoint.
CREATE TABLE webhook_deliveries (
    webhook_id       text NOT NULL REFERENCES webhooks (id),
    event_id         text NOT NULL,
    seq              bigint NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                         CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    delivered_at     timestamptz,
    PRIMARY KEY (webhook_id, seq)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, seq)
    WHERE state = 'pending';
