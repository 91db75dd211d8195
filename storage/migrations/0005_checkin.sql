-- 0005_checkin.sql: staff keys per event, and the gate a ticket was scanned at.

-- A key the admin hands to the door staff of one event; only its hash is kept.
CREATE TABLE staff_keys (
    id          text PRIMARY KEY,
    event_id    text NOT NULL REFERENCES events (id),
    label       text NOT NULL,
    key_hash    bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX staff_keys_event ON staff_keys (event_id, created_at);

-- Where a ticket was let in (with checked_in_at, set once by the first scan).
ALTER TABLE tickets ADD COLUMN checked_in_gate text;
-- The door's counts: an event's tickets, without reading every booking.
CREATE INDEX tickets_event ON tickets (event_id);
