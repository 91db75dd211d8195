-- 0004_tickets.sql: tickets in the buyer's hands: the booking token's expiry, kept with
-- the booking so the token is the same on every read, and the confirmation mail outbox.

-- Until when the booking's token reads it, s since the epoch (bookings made before this
-- get a year from their creation).
ALTER TABLE bookings ADD COLUMN token_expires_s bigint;
UPDATE bookings SET token_expires_s = extract(epoch FROM created_at)::bigint + 31536000;
ALTER TABLE bookings ALTER COLUMN token_expires_s SET NOT NULL;

-- A confirmation mail to send: written with its booking (so a payment never waits for
-- SMTP), sent by a worker's mail loop, retried until sent.
CREATE TABLE mail_outbox (
    booking_id       text PRIMARY KEY REFERENCES bookings (id),
    event_id         text NOT NULL,
    recipient        text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    sent_at          timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE sent_at IS NULL;
