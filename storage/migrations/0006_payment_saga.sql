-- Each payment's steps, so that one stopped halfway is driven to an end by the workers:
-- claimed (the hold is claimed; the card is about to be charged) -> recorded (the booking
-- is in PostgreSQL, written in the same transaction; Redis is made to agree by
-- reconciliation), or -> declined / voided (nothing charged), or -> compensating (charged,
-- but no booking can be made) -> refunded.
CREATE TABLE payment_sagas (
    idempotency_key  text PRIMARY KEY,
    event_id         text NOT NULL,
    hold_id          text NOT NULL,
    amount_cents     integer NOT NULL CHECK (amount_cents > 0),
    currency         text NOT NULL,
    step             text NOT NULL CHECK (step IN
                         ('claimed', 'recorded', 'declined', 'voided', 'compensating', 'refunded')),
    gateway_ref      text,
    booking_id       text,
    refund_ref       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- What the recovery loop looks at: payments not at an end.
CREATE INDEX payment_sagas_open ON payment_sagas (updated_at)
    WHERE step IN ('claimed', 'compensating');
