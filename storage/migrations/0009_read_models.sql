-- 0009_read_models.sql: read models projected from the event log.

-- How far the projector has applied each event's log. A projector locks the row FOR UPDATE
-- SKIP LOCKED, applies the next entries to the tables below and moves applied_seq in that
-- one transaction: a crash rolls both back (nothing counted twice), and two projectors
-- never apply one event at once.
CREATE TABLE read_model_cursors (
    event_id     text PRIMARY KEY,
    applied_seq  bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Per event: its name and currency (from event_created) and its totals.
CREATE TABLE rm_events (
    event_id           text PRIMARY KEY,
    name               text NOT NULL DEFAULT '',
    currency           text NOT NULL DEFAULT '',
    state              text NOT NULL DEFAULT 'scheduled',
    bookings           bigint NOT NULL DEFAULT 0,
    tickets_sold       bigint NOT NULL DEFAULT 0,
    revenue_cents      bigint NOT NULL DEFAULT 0,
    cancellations      bigint NOT NULL DEFAULT 0,
    bookings_cancelled bigint NOT NULL DEFAULT 0,
    tickets_cancelled  bigint NOT NULL DEFAULT 0,
    refunded_cents     bigint NOT NULL DEFAULT 0,
    refunds_refused    bigint NOT NULL DEFAULT 0,
    checked_in         bigint NOT NULL DEFAULT 0,
    joined             bigint NOT NULL DEFAULT 0,
    admitted           bigint NOT NULL DEFAULT 0,
    expired            bigint NOT NULL DEFAULT 0,
    confirmed          bigint NOT NULL DEFAULT 0
);

-- Per section of an event.
CREATE TABLE rm_sections (
    event_id           text NOT NULL,
    section            text NOT NULL,
    -- Its place in the event's spec: the report lists sections in that order.
    ord                integer NOT NULL DEFAULT 0,
    capacity           bigint NOT NULL DEFAULT 0,
    price_cents        bigint NOT NULL DEFAULT 0,
    tickets_sold       bigint NOT NULL DEFAULT 0,
    revenue_cents      bigint NOT NULL DEFAULT 0,
    tickets_cancelled  bigint NOT NULL DEFAULT 0,
    refunded_cents     bigint NOT NULL DEFAULT 0,
    checked_in         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, section)
);

-- Per minute of an event (the minute an entry was written; an admission summary's own).
CREATE TABLE rm_minutes (
    event_id           text NOT NULL,
    minute             timestamptz NOT NULL,
    bookings           bigint NOT NULL DEFAULT 0,
    tickets_sold       bigint NOT NULL DEFAULT 0,
    revenue_cents      bigint NOT NULL DEFAULT 0,
    cancellations      bigint NOT NULL DEFAULT 0,
    tickets_cancelled  bigint NOT NULL DEFAULT 0,
    refunded_cents     bigint NOT NULL DEFAULT 0,
    checked_in         bigint NOT NULL DEFAULT 0,
    joined             bigint NOT NULL DEFAULT 0,
    admitted           bigint NOT NULL DEFAULT 0,
    expired            bigint NOT NULL DEFAULT 0,
    confirmed          bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, minute)
);

-- Each sold ticket's section and price, from booking_confirmed: what a cancellation's or a
-- check-in's codes are counted against.
CREATE TABLE rm_tickets (
    event_id     text NOT NULL,
    code         text NOT NULL,
    section      text NOT NULL,
    price_cents  bigint NOT NULL,
    PRIMARY KEY (event_id, code)
);

-- Every event logged so far starts at the beginning of its log.
INSERT INTO read_model_cursors (event_id) SELECT event_id FROM event_log_heads;

-- The first entry of an event makes its cursors (the relay's, as before, and the projector's).
CREATE OR REPLACE FUNCTION event_log_number() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_log_heads AS h (event_id, last_seq) VALUES (NEW.event_id, 1)
    ON CONFLICT (event_id) DO UPDATE SET last_seq = h.last_seq + 1
    RETURNING last_seq INTO NEW.seq;
    IF NEW.seq = 1 THEN
        INSERT INTO event_log_cursors (event_id) VALUES (NEW.event_id) ON CONFLICT DO NOTHING;
        INSERT INTO read_model_cursors (event_id) VALUES (NEW.event_id) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NEW;
END
$$;
