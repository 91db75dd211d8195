-- 0003_cancellation.sql: cancellations and their refunds, and each event's refund policy.

-- Whether a buyer may cancel with a full refund, and until when (NULL: no deadline).
-- An admin may always cancel and refund.
ALTER TABLE events ADD COLUMN buyer_refunds boolean NOT NULL DEFAULT true;
ALTER TABLE events ADD COLUMN refund_until timestamptz;

-- One row per cancellation asked for: recorded 'pending' before any money moves, then
-- 'done' in the transaction that takes its tickets out of the booking ('refused' if the
-- gateway refused the refund for good). The refund's idempotency key at the gateway is
-- derived from the id, so retrying a pending cancellation never refunds twice.
CREATE TABLE cancellations (
    id               text PRIMARY KEY,
    booking_id       text NOT NULL REFERENCES bookings (id),
    event_id         text NOT NULL,
    idempotency_key  text NOT NULL,
    whole            boolean NOT NULL,          -- asked for the whole booking (no ticket list)
    codes            text[] NOT NULL,           -- the tickets it cancels
    amount_cents     integer NOT NULL CHECK (amount_cents >= 0),
    charge_ref       text NOT NULL,             -- payments.gateway_ref of the booking
    by_admin         boolean NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'refused')),
    refund_ref       text,
    booking_status   text,                      -- the booking's status once done
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    done_at          timestamptz,
    UNIQUE (booking_id, idempotency_key)
);
CREATE INDEX cancellations_pending ON cancellations (next_attempt_at) WHERE status = 'pending';
CREATE INDEX cancellations_done ON cancellations (done_at) WHERE status = 'done';
CREATE INDEX cancellations_event ON cancellations (event_id);

-- An admin cancelling a whole event: the sale is closed and every live booking is
-- cancelled and refunded by the workers (one cancellation each, under the key
-- 'event/<event id>', so a worker that dies leaves nothing another cannot finish).
CREATE TABLE event_cancellations (
    event_id      text PRIMARY KEY REFERENCES events (id),
    status        text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done')),
    requested_at  timestamptz NOT NULL DEFAULT now(),
    done_at       timestamptz
);
CREATE INDEX event_cancellations_running ON event_cancellations (event_id) WHERE status = 'running';
