-- 0001_init.sql: events, seats, bookings, tickets, payments, and the event log.

CREATE TABLE events (
    id                text PRIMARY KEY,
    name              text NOT NULL,
    opens_at          timestamptz NOT NULL,
    max_per_order     integer NOT NULL CHECK (max_per_order > 0),
    hold_seconds      integer NOT NULL CHECK (hold_seconds > 0),
    max_active_holds  integer NOT NULL CHECK (max_active_holds > 0),
    sections          jsonb NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- Every seat of every event; general-admission places are numbered 1..capacity.
CREATE TABLE seats (
    event_id     text NOT NULL REFERENCES events (id),
    section      text NOT NULL,
    position     integer NOT NULL,          -- byte offset in the Redis seat map
    seat_row     text NOT NULL,             -- '' for general admission
    seat_number  integer NOT NULL,
    price_cents  integer NOT NULL,
    PRIMARY KEY (event_id, section, position)
);

CREATE TABLE bookings (
    id            text PRIMARY KEY,
    event_id      text NOT NULL REFERENCES events (id),
    hold_id       text NOT NULL UNIQUE,     -- a hold is booked at most once
    ticket_seq    bigint NOT NULL,
    client_id     text NOT NULL,
    amount_cents  integer NOT NULL,
    status        text NOT NULL DEFAULT 'confirmed' CHECK (status IN ('confirmed', 'cancelled')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    cancelled_at  timestamptz
);
CREATE INDEX bookings_event ON bookings (event_id);

-- One row per seat of a booking; the code is what the door scans.
CREATE TABLE tickets (
    code           text PRIMARY KEY,
    booking_id     text NOT NULL REFERENCES bookings (id),
    event_id       text NOT NULL,
    section        text NOT NULL,
    position       integer NOT NULL,
    seat_row       text NOT NULL,
    seat_number    integer NOT NULL,
    live           boolean NOT NULL DEFAULT true,
    checked_in_at  timestamptz
);
CREATE INDEX tickets_booking ON tickets (booking_id);
-- No oversell, even if Redis were wrong: a seat has at most one live ticket.
CREATE UNIQUE INDEX tickets_one_live_per_seat ON tickets (event_id, section, position) WHERE live;

-- A payment per idempotency key: a retried key finds its booking, never charges twice.
CREATE TABLE payments (
    idempotency_key  text PRIMARY KEY,
    hold_id          text NOT NULL,
    booking_id       text NOT NULL,
    amount_cents     integer NOT NULL,
    gateway_ref      text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Append-only log of state changes; read models are projected from it, and it
-- doubles as an outbox (published_at set once delivered downstream).
CREATE TABLE event_log (
    id            bigserial PRIMARY KEY,
    event_id      text NOT NULL,
    kind          text NOT NULL,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX event_log_unpublished ON event_log (id) WHERE published_at IS NULL;
